"""VerSe label numbers and names (as include/spine/labels.hpp)."""


def vertebra_name(v):
    if 1 <= v <= 7:
        return f"C{v}"
    if 8 <= v <= 19:
        return f"T{v - 7}"
    if 20 <= v <= 25:
        return f"L{v - 19}"
    return {26: "S", 28: "T13"}.get(v, str(v))
