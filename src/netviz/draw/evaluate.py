"""`netviz evaluate` outputs: the mean deletion and insertion curves, the ranked table, the JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.draw.common import pyplot, save_figure
from netviz.files import Artifact, write_json

if TYPE_CHECKING:
    from netviz.evaluate import Evaluation


def plot_curves(ev: Evaluation, path: str | os.PathLike) -> Path:
    """Mean deletion (left) and insertion (right) curves, one colour per method, best first."""
    plt = pyplot()
    fig, (ax_del, ax_ins) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    colours = plt.get_cmap("tab20")
    f = ev.fractions.numpy()
    n = len(ev.inputs)
    for k, name in enumerate(ev.ranked()):
        m = ev.methods[name]
        s = m.summary(n)
        strong_first = (2 * k) % 20 + (2 * k) // 20 % 2  # tab20 pairs each colour with a pale twin
        style = {"color": "0.3", "ls": "--"} if name == "random" else {"color": colours(strong_first)}
        mark = ", fails sanity" if s["sanity_passed"] is False and name != "random" else ""
        ax_del.plot(f, m.deletion.mean(0).numpy(), lw=1.6, label=f"{name} ({s['deletion_auc']:.3f}{mark})", **style)
        ax_ins.plot(f, m.insertion.mean(0).numpy(), lw=1.6, label=f"{name} ({s['insertion_auc']:.3f}{mark})",
                    **style)
    ax_del.set_title("deletion: top pixels replaced by the baseline (lower AUC is better)", fontsize=9)
    ax_ins.set_title("insertion: top pixels put into the baseline (higher AUC is better)", fontsize=9)
    for ax in (ax_del, ax_ins):
        ax.set_xlabel("fraction of pixels, in the order of the method's map")
        ax.grid(alpha=0.3)
        # under the plot, never over a curve
        ax.legend(fontsize=7, title="method (AUC)", title_fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
        ax.set_xlim(0, 1)
    ax_del.set_ylabel("probability of the target class (mean)")
    fig.suptitle(f"{ev.spec.name}: {n} image(s), baseline {ev.settings['baseline']}, "
                 f"steps of {ev.settings['steps_frac']:g}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def table(ev: Evaluation) -> str:
    """The ranked table `netviz evaluate` prints."""
    n = len(ev.inputs)
    rows = [("rank", "method", "deletion AUC", "insertion AUC", "ins - del", "sanity rho", "s/image")]
    for rank, name in enumerate(ev.ranked(), start=1):
        s = ev.methods[name].summary(n)
        sanity = "-" if s["sanity_spearman"] is None else f"{s['sanity_spearman']:.3f}"
        if s["sanity_passed"] is False:
            sanity += " FAIL"
        rows.append((str(rank), name, f"{s['deletion_auc']:.4f}", f"{s['insertion_auc']:.4f}",
                     f"{s['insertion_auc'] - s['deletion_auc']:+.4f}", sanity, f"{s['seconds_per_image']:.4f}"))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if k == 1 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.append(f"(deletion: lower is better; insertion: higher; sanity rho: lower; FAIL: rho >= {ev.sanity_limit}, "
                 "the map hardly depends on the model, ranked below the methods that pass)")
    lines += [f"not run: {name}: {why}" for name, why in ev.failed.items()]
    return "\n".join(lines)


def write_evaluation(ev: Evaluation, out_dir: str | os.PathLike) -> list[Artifact]:
    """evaluate.json and curves.png into ``out_dir``."""
    out = Path(out_dir)
    return [Artifact(write_json(out / "evaluate.json", ev.record()),
                     "per method: deletion and insertion AUC, sanity correlation, seconds per image, curves"),
            Artifact(plot_curves(ev, out / "curves.png"),
                     f"mean deletion and insertion curves of {len(ev.methods)} method(s)")]
