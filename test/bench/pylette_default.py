"""The replaced system's palette algorithm, Pylette's default `extract_colors` (mode KM, resize=True,
no alpha threshold), for measuring it on the same files as test/bench/palette.bench.ts.

Mirrors Pylette's source: open, convert RGBA, resize to 256x256 (Pillow's default filter), drop
pixels with alpha <= 0, scikit-learn KMeans(k-means++, n_init="auto", random_state=2024) on the
RGBA rows, centres cast to int, shares from label counts, most frequent first.

Needs python3-sklearn and python3-pil (Debian). Not part of `npm run bench`; see docs/palette.md:
    node <build>/test/bench/palette.bench.js --write-images /tmp/palette-bench
    OMP_NUM_THREADS=1 python3 test/bench/pylette_default.py time /tmp/palette-bench/{png,jpeg}-*
    python3 test/bench/pylette_default.py accuracy /tmp/palette-bench/cases.json > pylette-cases.json
"""
import json
import statistics
import sys
import time

import numpy as np
from PIL import Image
from sklearn.cluster import KMeans


def extract(path, size):
    img = Image.open(path).convert("RGBA").resize((256, 256))
    arr = np.asarray(img)
    valid = arr[~(arr[:, :, 3] <= 0)]
    model = KMeans(n_clusters=size, n_init="auto", init="k-means++", random_state=2024)
    labels = model.fit_predict(valid)
    centres = np.array(model.cluster_centers_, dtype=int)
    shares = np.bincount(labels) / float(len(labels))
    ranked = sorted(zip(centres.tolist(), shares.tolist()), key=lambda c: -c[1])
    return [{"rgb": c[:3], "proportion": s} for c, s in ranked]


def main(mode, args):
    if mode == "time":
        for path in args:
            for _ in range(3):
                extract(path, 5)
            samples = []
            for _ in range(30):
                t = time.perf_counter()
                extract(path, 5)
                samples.append((time.perf_counter() - t) * 1000)
            samples.sort()
            print(json.dumps({"file": path, "median_ms": round(statistics.median(samples), 2),
                              "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2)}))
    elif mode == "accuracy":
        cases = json.load(open(args[0]))
        print(json.dumps([{"name": c["name"], "colors": extract(c["file"], c["size"])} for c in cases]))
    else:
        sys.exit("usage: pylette_default.py time FILE... | accuracy CASES.json")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:])
