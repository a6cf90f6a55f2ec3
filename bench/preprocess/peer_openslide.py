#!/usr/bin/python3
# peer_openslide.py — the benchmark PEER of stage.preprocess_slides (not part
# of pathseg): the same job done the usual Python way, openslide-python +
# Pillow + numpy. Per slide: level-0 block-mean thumbnail (thumb_factor),
# HSV saturation, Otsu (256 bins, as skimage), the tile grid kept where the
# tissue fraction is >= min_tissue, then per tile read_region -> RGB -> PNG
# (Pillow's compress_level --level, the stage's png_compression; Pillow
# filters rows adaptively, as the stage's default png_filter). One slide per
# process of a multiprocessing pool of --workers (1: no pool). Prints one
# JSON line: {"tiles": N, "seconds": S}.
#   apt-get install python3-openslide python3-pil python3-numpy
import argparse
import json
import math
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
import openslide


def otsu(x, nbins=256):
    hist, edges = np.histogram(x.ravel(), nbins)
    centers = (edges[:-1] + edges[1:]) / 2
    w1 = np.cumsum(hist)
    w2 = np.cumsum(hist[::-1])[::-1]
    m1 = np.cumsum(hist * centers) / w1
    m2 = (np.cumsum((hist * centers)[::-1]) / w2[::-1])[::-1]
    var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return centers[:-1][np.argmax(var)]


def one_slide(job):
    path, out, tile, overlap, min_tissue, f, level = job
    s = openslide.OpenSlide(path)
    W, H = s.dimensions
    rgb = np.asarray(s.read_region((0, 0), 0, (W, H)).convert("RGB"), dtype=np.float64)
    th, tw = H // f, W // f
    thumb = rgb[: th * f, : tw * f].reshape(th, f, tw, f, 3).mean(axis=(1, 3))
    mx, mn = thumb.max(axis=2), thumb.min(axis=2)
    sat = np.where(mx == mn, 0.0, (mx - mn) / np.where(mx == 0, 1, mx))
    mask = sat > otsu(sat)
    stem = os.path.splitext(os.path.basename(path))[0]
    tdir = os.path.join(out, stem, "tiles")
    os.makedirs(tdir, exist_ok=True)
    stride = tile - overlap
    n = 0
    for y in range(0, H - tile + 1, stride):
        for x in range(0, W - tile + 1, stride):
            cells = mask[y // f : min(math.ceil((y + tile) / f), th), x // f : min(math.ceil((x + tile) / f), tw)]
            if cells.size == 0 or cells.mean() < min_tissue:
                continue
            img = s.read_region((x, y), 0, (tile, tile)).convert("RGB")
            tmp = os.path.join(tdir, ".%d_%d.png.tmp" % (x, y))
            img.save(tmp, "PNG", compress_level=level)
            os.replace(tmp, os.path.join(tdir, "%d_%d.png" % (x, y)))
            n += 1
    s.close()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=0)
    ap.add_argument("--min-tissue", type=float, default=0.5)
    ap.add_argument("--thumb-factor", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("slides", nargs="+")
    a = ap.parse_args()
    jobs = [(p, a.out, a.tile, a.overlap, a.min_tissue, a.thumb_factor, a.level) for p in a.slides]
    t0 = time.perf_counter()
    if a.workers > 1:
        with Pool(a.workers) as pool:
            counts = pool.map(one_slide, jobs, chunksize=1)
    else:
        counts = [one_slide(j) for j in jobs]
    print(json.dumps({"tiles": sum(counts), "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
