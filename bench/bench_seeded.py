"""Search range that follows the motion (issue 14), synthetic truth: a body with its own
real Sentinel-2 texture advected by 20-40 px under a fixed outline (~20 % of a 544 x 544
scene), stable real texture around it, 1 % noise (tests/test_seeded_search.py's pair).

Per shift: RMSE inside the body (windows at least window/2 + |d| from its edge) and the
largest error on stable ground (windows at least 24 px outside), for
  * plain search 8 (the old default: misses the body),
  * plain search = the shift bound (max_displacement, the brute-force way),
  * seeded (max_displacement, core/seeded_search.py),
with their wall times on the same machine in the same run.

    .venv/bin/python bench/bench_seeded.py
"""

import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.test_seeded_search import _glacier_pair, _zones  # noqa: E402
from slidewatch.core.matching.correlation import correlate  # noqa: E402

SHIFTS = [(-22.4, 31.7), (14.6, -35.3), (-12.2, 9.7), (27.9, 26.1)]
BOUND = 45


def main():
    correlate(*_glacier_pair(1.0, 1.0, size=128)[:2], max_displacement=20)   # compile
    print("| shift (dy, dx) px | method | body RMSE px | body valid | stable max error px "
          "| wall s |")
    print("|---|---|---|---|---|---|")
    for dy, dx in SHIFTS:
        ref, sec, body = _glacier_pair(dy, dx)
        for name, kw in (("plain search 8", {}), ("plain search %d" % BOUND,
                                                  dict(search=BOUND)),
                         ("seeded, max_displacement %d" % BOUND,
                          dict(max_displacement=BOUND))):
            t = time.perf_counter()
            res = correlate(ref, sec, **kw)
            wall = time.perf_counter() - t
            inner, outer = _zones(res, body, 24 + np.hypot(dy, dx))
            ok = res.valid
            e = np.hypot(res.dy - dy, res.dx - dx)[ok & inner]
            st = np.hypot(res.dy, res.dx)[ok & outer]
            print("| (%.1f, %.1f) | %s | %s | %.1f %% | %.3f | %.2f |" % (
                dy, dx, name, "%.4f" % np.sqrt(np.mean(e ** 2)) if e.size else "-",
                100 * (ok & inner).sum() / inner.sum(), st.max() if st.size else np.nan,
                wall))


if __name__ == "__main__":
    main()
