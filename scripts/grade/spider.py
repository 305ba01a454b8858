"""SPIDER gradings and series, and how spine-grade's disc names map onto SPIDER's disc
numbers (counted from the bottom: 1 = L5/S1 in a normal spine)."""
import csv
import hashlib
from pathlib import Path

FINDINGS = ["modic_change", "upper_endplate", "lower_endplate", "spondylolisthesis", "herniation", "narrowing",
            "bulging"]
# spine-grade's names (label_name of 100 + the vertebra above) from the bottom up.
NAMES_BOTTOM_UP = ["L5/S", "L4/L5", "L3/L4", "L2/L3", "L1/L2", "T12/L1", "T11/T12", "T10/T11", "T9/T10"]


def spider_index(name):
    """SPIDER's disc number for one of spine-grade's disc names, or None."""
    return NAMES_BOTTOM_UP.index(name) + 1 if name in NAMES_BOTTOM_UP else None


def read_series(data_dir):
    return {r["series"]: r for r in csv.DictReader(open(Path(data_dir) / "series.csv"))}


def read_gradings(data_dir):
    """{patient: {disc number: {pfirrmann, modic_change, ...}}}."""
    out = {}
    for r in csv.DictReader(open(Path(data_dir) / "gradings.csv")):
        g = {"pfirrmann": int(r["pfirrmann"]), "modic": int(r["modic"]), "modic_change": int(int(r["modic"]) > 0)}
        for f in FINDINGS[1:]:
            g[f] = int(r[f])
        out.setdefault(r["patient"], {})[int(r["disc"])] = g
    return out


def patient_fold(patient, folds):
    """A patient's fold of `folds` (by SHA-256 of the patient id, so it never depends on
    file order). Fold 0 of 5 is the tuning fifth (tune_patient)."""
    return int(hashlib.sha256(patient.encode()).hexdigest(), 16) % folds


def tune_patient(patient):
    """The fifth of SPIDER's training patients held out for choosing the epoch and the
    operating points."""
    return patient_fold(patient, 5) == 0


def group_of(row):
    """Scanner group for the per-centre figures (SPIDER names no hospital)."""
    return f"{row['Manufacturer'].split()[0]} {row['ManufacturerModelName']} {row['MagneticFieldStrength']}T"


def sequence_of(series):
    return series.split("_", 1)[1] if "_" in series else "?"
