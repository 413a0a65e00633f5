"""PGD-20 and PGD-100 against external attacks across training regimes: the evidence behind docs/science-results.md,
section (c), and behind the two bounds tests/workers/test_validation_external.py asserts for correct code:
AutoAttack (APGD-CE + APGD-T) never weaker than our PGD-100 by more than 0.5 points, and pyautoattack's APGD-CE
within 1.5 points of our PGD-100. No Ray, CPU, about 15 minutes on 2 idle cores (862 s measured).

    .venv/bin/python scripts/pgd_vs_autoattack.py [--data-root .data/cifar10-jpeg] [--threads 2]

Four tiny models, each trained here with a fixed seed:
- synthetic-clean / synthetic-at: the validation test's TinyNet (tests/testkit) on its synthetic 8x8 patterns
  (2000 images, Adam 1e-2, 5 epochs), clean or PGD-5 adversarial training at eps 4/255;
- cifar10-jpeg-clean / cifar10-jpeg-at: a WRN d1-1-1 w0.5 (registered model "wrn") on a seeded random 10k of the
  cifar10-jpeg training images (SGD 0.05, momentum 0.9, batch 128; 5 epochs clean, or 8 epochs of PGD-3 adversarial
  training at eps 4/255), evaluated on a seeded random 500 of the test images.
Per model and eps: our PGD-20 and PGD-100 (step eps/10, random start, seed 0), torchattacks PGD-20 (same eps, step,
steps), APGD-CE alone and AutoAttack's APGD-CE + APGD-T (pyautoattack 0.2.0), all robust accuracies on the same images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # testkit: the validation test's TinyNet, data and training

from testkit.tiny_net import accuracy, fit, synthetic, trained_tiny_net  # noqa: E402

from workers.attacks import make_attack  # noqa: E402
from workers.attacks.autoattack import AutoAttack  # noqa: E402
from workers.data.cache import load_decoded  # noqa: E402
from workers.data.registry import get_dataset  # noqa: E402
from workers.models import build_model  # noqa: E402


def synthetic_model(train_eps: float) -> tuple[nn.Module, Tensor, Tensor]:
    return (trained_tiny_net(train_eps=train_eps), *synthetic(1000, seed=2))


def cifar_model(root: Path, train_eps: float) -> tuple[nn.Module, Tensor, Tensor]:
    d = load_decoded(get_dataset("cifar10-jpeg"), root)
    g = torch.Generator().manual_seed(0)
    tr = torch.randperm(len(d.raw.train_y), generator=g)[:10_000]  # the files are sorted by class: draw at random
    te = torch.randperm(len(d.raw.test_y), generator=g)[:500]
    x, y = d.raw.train_x[tr].float() / 255, d.raw.train_y[tr].long()
    torch.manual_seed(0)
    model = build_model("wrn", depths=(1, 1, 1), widths=(0.5, 0.5, 0.5), num_classes=10, mean=d.mean, std=d.std)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    fit(model, x, y, opt=opt, epochs=8 if train_eps else 5, batch=128, train_eps=train_eps, steps=3, shuffle=True)
    return model, d.raw.test_x[te].float() / 255, d.raw.test_y[te].long()


def torchattacks_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> float | None:
    try:
        import torchattacks
    except ImportError:  # its __init__ imports every attack; see the validation test for the PGD-only import
        return None
    torch.manual_seed(0)
    return accuracy(model, torchattacks.PGD(model, eps=eps, alpha=eps / 10, steps=20, random_start=True)(x, y), y)


def row(name: str, model: nn.Module, x: Tensor, y: Tensor, eps_255: float) -> dict[str, float | str | None]:
    eps, out = eps_255 / 255, {"model": name, "eps": f"{eps_255:g}/255", "clean": accuracy(model, x, y)}
    for steps in (20, 100):
        torch.manual_seed(0)
        pgd = make_attack("pgd", eps=eps, steps=steps, step_size=eps / 10)
        out[f"pgd{steps}"] = accuracy(model, pgd(model, x, y), y)
    out["torchattacks_pgd20"] = torchattacks_pgd(model, x, y, eps)
    for key, attacks in (("apgd_ce", ("apgd-ce",)), ("aa_ce_t", ("apgd-ce", "apgd-t"))):
        torch.manual_seed(0)
        out[key] = accuracy(model, AutoAttack(eps=eps, attacks=attacks)(model, x, y), y)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO / ".data" / "cifar10-jpeg")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runs = [("synthetic-clean", lambda: synthetic_model(0.0), (2, 4, 6)),
            ("synthetic-at", lambda: synthetic_model(4 / 255), (4, 6)),
            ("cifar10-jpeg-clean", lambda: cifar_model(args.data_root, 0.0), (1, 2)),
            ("cifar10-jpeg-at", lambda: cifar_model(args.data_root, 4 / 255), (2, 4))]
    cols = ["model", "eps", "clean", "pgd20", "torchattacks_pgd20", "pgd100", "apgd_ce", "aa_ce_t"]
    gaps = ["PGD-20 - AA (pt)", "AA - PGD-100 (pt)", "APGD-CE - PGD-100 (pt)"]
    print("| " + " | ".join(cols + gaps) + " |")
    print("|" + "---|" * (len(cols) + len(gaps)))
    for name, make, grid in runs:
        model, x, y = make()
        for e in grid:
            r = row(name, model, x, y, e)
            cells = [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
            pts = [r["pgd20"] - r["aa_ce_t"], r["aa_ce_t"] - r["pgd100"], r["apgd_ce"] - r["pgd100"]]
            print("| " + " | ".join(cells + [f"{100 * p:+.1f}" for p in pts]) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
