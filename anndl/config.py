"""Configuration: repository paths, data resolution and the run profiles, as frozen dataclasses.

A profile is ``smoke`` (tiny, CPU, minutes; numbers are not results) or ``full`` (the report's
settings). Every run writes its configuration next to its outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO_ROOT / "data"
OUTPUTS = REPO_ROOT / "outputs"
PROFILES = ("smoke", "full")

# Size of the synthetic default dataset generated when data/ holds no challenge folder.
SYNTHETIC_DEFAULT = {
    "full": dict(n_train=691, n_test=477, scale=1.0, seed=0),
    "smoke": dict(n_train=691, n_test=477, scale=1.0, seed=0),
}


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


def as_dict(config) -> dict:
    """A dataclass config as a JSON-ready dict."""
    return asdict(config)
