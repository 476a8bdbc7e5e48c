"""Time loading FER2013: the first (cold) load decodes every JPEG, the second reads
the ``.npz`` cache. Prints both in seconds and their ratio.

    python benchmarks/bench_data_load.py [path]    # default: resolve_path()

The cache goes to a temporary folder, so the user's cache is neither used nor changed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from fer_lib.data import load_fer2013, resolve_path


def time_load(path, cache_dir) -> tuple[float, int]:
    """Seconds for one ``load_fer2013`` and the number of images loaded."""
    start = time.perf_counter()
    fer = load_fer2013(path, cache_dir=cache_dir)
    return time.perf_counter() - start, len(fer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="zip, CSV or folder (default: resolve_path())")
    path = resolve_path(parser.parse_args().path)
    with tempfile.TemporaryDirectory() as cache_dir:
        cold, n = time_load(path, cache_dir)
        cached, _ = time_load(path, cache_dir)
    print(f"source: {path} ({n} images)")
    print(f"cold load (decode + write cache): {cold:6.2f} s")
    print(f"cached load (read .npz):          {cached:6.2f} s")
    print(f"ratio cold / cached:              {cold / cached:6.1f}x")


if __name__ == "__main__":
    main()
