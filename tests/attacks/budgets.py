"""Small budgets so the registry-wide contract tests stay fast on a CPU.

Attacks not listed run with their defaults. Budgets are per attack name.
"""

FAST_PARAMS: dict[str, dict] = {
    "pgd": {"steps": 10},
    "apgd": {"steps": 10},
    "cw": {"steps": 30, "binary_search_steps": 4},
    "deepfool": {"steps": 20},
    "fmn": {"steps": 30},
    "square": {"queries": 100},
    "onepixel": {"population": 40, "iterations": 10},
    "lbfgs": {"binary_search_steps": 3, "max_iter": 20},
    "cascade": {"members": [
        {"name": "pgd", "label": "pgd-5", "steps": 5, "random_start": False},
        {"name": "pgd", "steps": 10},
    ]},
}

# A budget per norm at which a plain digits CNN is clearly attackable.
EPS_BY_NORM: dict[str, float] = {"linf": 0.15, "l2": 1.5, "l1": 8.0, "l0": 3.0}
