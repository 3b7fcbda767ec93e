"""Peak memory and time of one calculator call (E+F+S) on rattled diamond, for quick A/B checks.

    python benchmarks/memory_speed_check.py                         # this checkout
    ATTNMACE_RETAIN_MEMORY=0 python benchmarks/memory_speed_check.py
    python benchmarks/memory_speed_check.py --before /tmp/old       # another checkout of attnmace

Builds the untrained attention preset (3 layers of 5 Å, seed 0) and exports it; then
one warm-up call, then the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``)
over two calls on slightly moved positions, and the time of the last one. Linux only.
"""

import argparse
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="path of another attnmace checkout to import instead")
    parser.add_argument("--repeat", type=int, default=4, help="diamond supercell repeat (4: 512 atoms)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--torchscript", action="store_true", help="run the file's TorchScript module (the old default)"
    )
    args = parser.parse_args(argv)
    if args.before:
        from checkout import use_checkout

        use_checkout(args.before)

    import attnmace  # noqa: I001  (first: huge pages before torch)
    import tempfile

    import torch
    from ase.build import bulk

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model = attnmace.build_model("attention", species=["C"], cutoffs=(5.0, 5.0, 5.0), dtype=dtype, seed=0)
    path = tempfile.mkdtemp() + "/attention.pt"
    attnmace.export_model(model, path)
    atoms = bulk("C", "diamond", a=3.567, cubic=True).repeat((args.repeat,) * 3)
    atoms.rattle(0.05, seed=1)
    try:
        atoms.calc = attnmace.AttnMACECalculator(path, device="cpu", dtype=args.dtype, torchscript=args.torchscript)
    except TypeError:  # an older checkout: it has no torchscript option and always ran TorchScript
        atoms.calc = attnmace.AttnMACECalculator(path, device="cpu", dtype=args.dtype)
    atoms.get_forces()
    atoms.get_stress()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    for _ in range(2):
        atoms.rattle(0.001)
        start = time.perf_counter()
        atoms.get_forces()
        atoms.get_stress()
        seconds = time.perf_counter() - start
    with open("/proc/self/status") as fh:
        peak_kb = int(next(line for line in fh if line.startswith("VmHWM")).split()[1])
    where = attnmace.__file__
    print(f"{where}: {len(atoms)} atoms, {args.dtype}: peak {peak_kb // 1024} MB, last call {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
