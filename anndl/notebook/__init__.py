"""What every notebook starts and ends with: ``setup`` and ``Context.footer``; light to import (before the top-up)."""

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Context:
    """What a notebook's setup resolved: the parameters that decide its outputs, and where things are."""

    profile: str
    seed: int
    data: Path        # the challenge folder used (the synthetic default when none was found)
    output: Path
    started: float    # time.time() at the setup: the footer's wall time
    weights_note: str | None = None   # what the banner and score figures say of the weights

    def footer(self) -> None:
        """Print what produced this rendering: wall time, hardware, seed, commit, versions and the files written."""
        from anndl.core.env import footer
        print(footer(self.started, self.seed, self.output))


def setup(namespace: dict, weights: str | None = None) -> Context:
    """A notebook's start from ``globals()``: prints runtime, banner, data; defines ``DATA``, ``OUT``, ``BANNER``, …"""
    started = time.time()
    from anndl.core import env
    from anndl.core.config import REPO_ROOT, SYNTHETIC_DEFAULT, check_profile
    from anndl.notebook import hosted

    env.plain_progress()
    if hosted.runtime() != "local":
        hosted.ensure_requirements()
        hosted.read_hf_token()
    env.quiet_tensorflow()
    sys.path.insert(0, str(REPO_ROOT))  # the fetch cell's entries are relative to a folder a cell may leave
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    from anndl.data import describe_data, refuse_synthetic, resolve_data_dir

    profile, seed = check_profile(namespace.get("PROFILE", "smoke")), int(namespace.get("SEED", 42))
    where = hosted.places(namespace.get("DATA_DIR"), namespace.get("OUTPUT_DIR"), namespace.get("DRIVE"))
    where.output.mkdir(parents=True, exist_ok=True)
    data = resolve_data_dir(where.data, SYNTHETIC_DEFAULT)
    refuse_synthetic(profile, data, namespace.get("ALLOW_SYNTHETIC", False))
    if namespace.get("MIXED_PRECISION") == "auto":  # the parameters cell's default: this runtime's fastest
        from anndl.core.distribute import precision_advice

        namespace["MIXED_PRECISION"], why = precision_advice()
        print(f"MIXED_PRECISION = {namespace['MIXED_PRECISION']!r} (auto: {why})")
    env.name_root(data, "data"), env.name_root(where.output, "outputs")
    print("\n".join(hosted.doctor(replace(where, data=data), short=True)))

    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from IPython.display import Markdown, display

    from anndl.notebook import interpret, report
    from anndl.notebook.plots import save_fig, show

    def save_and_show(fig, name: str, figures_dir) -> None:
        """A notebook's figure: saved as ``figures_dir/name.png``, then shown (charts PNG, images JPEG) and closed."""
        save_fig(fig, name, figures_dir)
        show()

    pd.set_option("display.width", 140)
    plt.rcParams["figure.dpi"] = 72  # small inline figures (saved PNGs keep save_fig's dpi)
    banner = interpret.banner(profile, data, weights)
    namespace.update(ROOT=REPO_ROOT, DATA=data, OUT=where.output, FIGURES=where.output / "figures",
                     WEIGHTS_NOTE=weights, BANNER=banner, np=np, pd=pd, plt=plt, display=display, Markdown=Markdown,
                     interpret=interpret, report=report, portable=env.portable, save_fig=save_and_show, show=show)
    display(Markdown(f"> **{banner}**"))
    print(f"This rendering: profile={profile!r}, seed={seed}, data: {env.portable(describe_data(data))}")
    return Context(profile, seed, data, where.output, started, weights)
