#!/usr/bin/python3
"""Puts newly measured validation figures into the card inside an exported model, keeping
its weights exactly (checked), e.g. after re-measuring a shipped model with changed code.
Usage: /usr/bin/python3 scripts/recard_model.py MODEL.pt FIGURES.json"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib.model_card import replace_validation  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    replace_validation(sys.argv[1], json.load(open(sys.argv[2])))
    print(f"card of {sys.argv[1]} updated")
