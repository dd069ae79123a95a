"""The training progress bar."""

from __future__ import annotations

import sys
from typing import Any, Dict


class _Progress:
    """tqdm's bar when tqdm is installed (tqdm.auto: notebooks too), else a
    line on stderr when it is a terminal."""

    def __init__(self) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        self._tqdm = tqdm
        self._bar: Any = None
        self._tty = sys.stderr.isatty()

    def update(self, e: Dict[str, Any]) -> None:
        kind = e["event"]
        if kind == "chunks" and self._tqdm is not None:
            # Within a bucket: the bar moves by the share of its chunks done.
            if self._bar is None:
                self._bar = self._tqdm(total=e["epochs"] * e["buckets"], unit="bucket",
                                       desc=f"epoch {e['epoch'] + 1}/{e['epochs']}")
            at = e["epoch"] * e["buckets"] + e["bucket"] + e["done"] / max(e["chunks"], 1)
            self._bar.update(at - self._bar.n)
        elif kind == "bucket":
            total = e["epochs"] * e["buckets"]
            done = e["epoch"] * e["buckets"] + e["bucket"] + 1
            desc = f"epoch {e['epoch'] + 1}/{e['epochs']}"
            mean = e["loss"] / max(e["edges"], 1)
            if self._tqdm is not None:
                if self._bar is None:
                    self._bar = self._tqdm(total=total, unit="bucket", desc=desc)
                self._bar.set_description(desc, refresh=False)
                self._bar.set_postfix(mean_loss=f"{mean:.4f}", refresh=False)
                self._bar.update(done - self._bar.n)
            elif self._tty:
                sys.stderr.write(f"\r{desc} bucket {e['bucket'] + 1}/{e['buckets']} mean loss {mean:.4f}")
        elif kind == "start" and e["held_out"] and (self._bar is not None or self._tty):
            print(f"validation: {e['held_out']} held-out edges, at most {e['epochs']} epochs; the best is kept",
                  file=sys.stderr)
        elif kind == "validation":
            line = f"valid after epoch {e['epoch'] + 1}: MRR {e['mrr']:.4f}, Hits@10 {e['hits@10']:.4f} (best after epoch {e['best_epoch'] + 1})"
            if self._bar is not None:
                self._bar.write(line)
            elif self._tty:
                sys.stderr.write("\r" + line + "\n")
        elif kind == "epoch":
            rate = e["edges"] / e["seconds"] if e["seconds"] > 0 else float("nan")
            if self._bar is not None:
                self._bar.set_postfix(mean_loss=f"{e['mean_loss']:.4f}", edges_per_s=f"{rate:,.0f}")
            elif self._tty:
                sys.stderr.write(f"\repoch {e['epoch'] + 1}/{e['epochs']} mean loss {e['mean_loss']:.4f} {rate:,.0f} edges/s\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
