"""Which modules keep how much memory for the backward of one calculator call.

    python benchmarks/saved_tensors.py [--preset attention] [--repeat 4] [--dtype float32]
    python benchmarks/saved_tensors.py --before /tmp/old     # another checkout of attnmace

Builds an untrained preset (3 layers of 5 Å, seed 0) on rattled diamond (``--repeat 4``: 512
atoms), computes forces through ``AttnMACECalculator`` (``eval()`` mode, as in MD) and records,
with ``torch.autograd.graph.saved_tensors_hooks``, every tensor storage that autograd keeps for
the backward, charged to the innermost module running when it was saved. Prints the total and the
largest modules: the memory a force call holds at the start of its backward, where its peak is.
"""

import argparse
import collections


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="attention")
    parser.add_argument("--repeat", type=int, default=4, help="diamond supercell repeat (4: 512 atoms)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--before", help="path of another attnmace checkout to import instead")
    args = parser.parse_args(argv)
    if args.before:
        from checkout import use_checkout

        use_checkout(args.before)

    import attnmace  # noqa: I001  (first: huge pages before torch)
    import torch
    from ase.build import bulk

    dtype = getattr(torch, args.dtype)
    model = attnmace.build_model(args.preset, species=["C"], cutoffs=(5.0, 5.0, 5.0), dtype=dtype, seed=0)
    atoms = bulk("C", "diamond", a=3.567, cubic=True).repeat((args.repeat,) * 3)
    atoms.rattle(0.05, seed=1)
    calc = attnmace.AttnMACECalculator(model, device="cpu", dtype=args.dtype)
    running = []
    for name, module in calc.model.named_modules():
        module.register_forward_pre_hook(lambda m, i, name=name: running.append(name or "<model>"))
        module.register_forward_hook(lambda m, i, o: running.pop() and None)  # None: keep the output
    storages = {}
    by_module = collections.Counter()

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in storages:
            storages[storage.data_ptr()] = storage.nbytes()
            by_module[running[-1] if running else "<outside modules>"] += storage.nbytes()
        return tensor

    atoms.calc = calc
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        atoms.get_forces()
    total = sum(storages.values())
    what = f"{attnmace.__file__}: {args.preset}, {len(atoms)} atoms, {args.dtype}"
    print(f"{what}: {total / 2**20:.0f} MB kept for the backward")
    for name, nbytes in by_module.most_common(args.top):
        print(f"{nbytes / 2**20:9.1f} MB  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
