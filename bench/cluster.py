"""Benchmark: roadparse spectral clustering vs scikit-learn SpectralClustering.

Synthetic 768-d features (a mixture of anisotropic Gaussian clusters), k = 20. Every
run is a fresh subprocess (wall time, CPU time, peak RSS via getrusage; address space
capped with setrlimit so a runaway reference cannot eat the shared machine). Features
are written to a .npy first and loaded by each run, as the stage loads its embeddings,
so peak RSS is features + algorithm. CPU time is the fairer number on a shared machine.
Prints one table with the ratio to the sklearn run of the same N side by side, the ARI
against the generating labels and the ARI between the two.

    python bench/cluster.py                      # N = 5k, 50k, 250k
    python bench/cluster.py --sizes 5000         # small only
    python bench/cluster.py --sizes 5000 --variants ours,ours_nndescent,sklearn
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SKLEARN_MAX_N = 50000
"""Above this sklearn builds a dense eigenproblem it cannot finish in the caps on this machine."""


def make_features(
    n: int, dim: int, n_groups: int, seed: int, spread: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Returns ((n, dim) float32 features, (n,) int64 group ids) from anisotropic Gaussians."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, size=(n_groups, dim)).astype(np.float32)
    # each group stretches along its own 16 directions, half of them shared by all groups
    common = rng.normal(0.0, 1.0, size=(1, 8, dim)).repeat(n_groups, axis=0)
    own = rng.normal(0.0, 1.0, size=(n_groups, 8, dim))
    bases = np.concatenate([common, own], axis=1).astype(np.float32) / np.sqrt(dim)
    scales = rng.uniform(0.5, 2.0, size=(n_groups, 16)).astype(np.float32)
    weights = rng.dirichlet(np.full(n_groups, 3.0))
    groups = rng.choice(n_groups, size=n, p=weights)
    features = np.empty((n, dim), dtype=np.float32)
    for g in range(n_groups):
        idx = np.flatnonzero(groups == g)
        latent = rng.normal(size=(len(idx), 16)).astype(np.float32) * scales[g]
        noise = rng.normal(0.0, 0.6, size=(len(idx), dim)).astype(np.float32) / np.sqrt(dim) * 16
        features[idx] = centres[g] + latent @ bases[g] * 4 + noise
    return features, groups.astype(np.int64)


def _spectral_nndescent(features: np.ndarray, k: int, n_neighbors: int, seed: int) -> np.ndarray:
    """Alternative measured here: kNN graph over ALL points with pynndescent, no sampling."""
    from pynndescent import NNDescent
    from sklearn.manifold import spectral_embedding

    from roadparse.clustering import _kmeans, knn_affinity, prepare_features

    points, _ = prepare_features(features, normalize=True)
    index = NNDescent(
        points, n_neighbors=n_neighbors + 1, metric="cosine", random_state=seed, n_jobs=1
    )
    neighbors = index.neighbor_graph[0][:, 1:]
    embedding = spectral_embedding(
        knn_affinity(neighbors, len(points)),
        n_components=k,
        eigen_solver="arpack",
        random_state=seed,
        drop_first=False,
    )
    return _kmeans(embedding.astype(np.float32), k, seed, n_init=10)[0]


def worker(variant: str, n: int, args: argparse.Namespace, out: Path) -> None:
    """Runs one clustering in this (sub)process and writes labels + timings to ``out``."""
    cap = int(args.mem_cap_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    features = np.load(
        out.parent / f"features_{n}.npy"
    )  # as the stage reads embed/features_layer*.npy
    started = time.perf_counter()
    cpu_started = time.process_time()
    if variant == "ours":
        from roadparse.clustering import cluster

        labels = cluster(
            features, "spectral", args.k, seed=args.seed, n_neighbors=args.neighbors
        ).labels
    elif variant == "ours_nndescent":
        labels = _spectral_nndescent(features, args.k, args.neighbors, args.seed)
    elif variant == "sklearn":
        from sklearn.cluster import SpectralClustering

        normed = features / np.linalg.norm(features, axis=1, keepdims=True)
        model = SpectralClustering(
            args.k,
            affinity="nearest_neighbors",
            n_neighbors=args.neighbors,
            random_state=args.seed,
            n_jobs=1,
        )
        labels = model.fit_predict(normed)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    np.save(out.with_suffix(".npy"), np.asarray(labels))
    out.write_text(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds}))


def run_one(variant: str, n: int, args: argparse.Namespace, tmp: Path) -> dict:
    """Returns {seconds, peak_gb, labels or error} of one run in a fresh subprocess."""
    out = tmp / f"{variant}_{n}.json"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--n",
        str(n),
        "--out",
        str(out),
    ] + _shared_flags(args)
    code = (
        "import resource, subprocess, sys, json;"
        "p = subprocess.run(sys.argv[1:]);"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': p.returncode, 'maxrss_kb': r.ru_maxrss}))"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, *cmd],
            capture_output=True,
            text=True,
            timeout=args.time_cap,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {args.time_cap} s time cap"}
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    if status["rc"] != 0 or not out.exists():
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return {"error": f"failed (rc {status['rc']}): {tail[0][:80]}"}
    timings = json.loads(out.read_text())
    return {
        "seconds": timings["seconds"],
        "cpu_seconds": timings["cpu_seconds"],
        "peak_gb": status["maxrss_kb"] / 2**20,
        "labels": np.load(out.with_suffix(".npy")),
    }


def _shared_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--dim",
        str(args.dim),
        "--groups",
        str(args.groups),
        "--k",
        str(args.k),
        "--seed",
        str(args.seed),
        "--neighbors",
        str(args.neighbors),
        "--mem-cap-gb",
        str(args.mem_cap_gb),
    ]


def main() -> None:
    from sklearn.metrics import adjusted_rand_score

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="5000,50000,250000", help="comma-separated N")
    parser.add_argument("--variants", default="ours,sklearn", help="ours, ours_nndescent, sklearn")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--groups", type=int, default=20, help="generating Gaussian clusters")
    parser.add_argument("--spread", type=float, default=0.3, help="centre spread: smaller = harder")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--neighbors", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mem-cap-gb", type=float, default=6.0, help="address-space cap per run")
    parser.add_argument("--time-cap", type=int, default=900, help="seconds per run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args, args.out)
        return
    variants = args.variants.split(",")
    print(
        f"# dim={args.dim} groups={args.groups} k={args.k} neighbors={args.neighbors} cap={args.mem_cap_gb} GB"
    )
    print(
        "| N | variant | wall s | CPU s | peak GB | ARI vs truth | wall ratio vs sklearn | ARI vs sklearn |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.sizes.split(",")):
            features, truth = make_features(n, args.dim, args.groups, args.seed, args.spread)
            np.save(Path(tmp) / f"features_{n}.npy", features)
            del features
            results = {}
            for variant in variants:
                if variant == "sklearn" and n > SKLEARN_MAX_N:
                    results[variant] = {
                        "error": f"skipped above {SKLEARN_MAX_N} (dense eigensolve, shared machine)"
                    }
                else:
                    results[variant] = run_one(variant, n, args, Path(tmp))
            ref = results.get("sklearn", {})
            for variant, res in results.items():
                if "error" in res:
                    print(f"| {n} | {variant} | – | – | – | – | – | {res['error']} |")
                    continue
                ratio = f"{res['seconds'] / ref['seconds']:.2f}" if "seconds" in ref else "–"
                vs_ref = (
                    f"{adjusted_rand_score(ref['labels'], res['labels']):.3f}"
                    if "labels" in ref
                    else "–"
                )
                truth_ari = adjusted_rand_score(truth, res["labels"])
                print(
                    f"| {n} | {variant} | {res['seconds']:.1f} | {res['cpu_seconds']:.1f} | {res['peak_gb']:.2f} | {truth_ari:.3f} | {ratio} | {vs_ref} |"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
