"""The AttnMACE model: MACE with geometric attention and layer-dependent cutoffs."""

import dataclasses
import functools
import warnings
from typing import Dict, List, Optional

import torch
from e3nn import o3

from . import keys
from .config import ModelConfig, make_config
from .nn import (
    AttentionAggregation,
    InteractionBlock,
    LinearReadout,
    MLPReadout,
    RadialEmbedding,
    SumAggregation,
    SymmetricContraction,
    ZBLRepulsion,
)
from .nn._irreps import natural_irreps
from .nn.attention import max_neighbours
from .nn.cutoff import soft_floor
from .nn.repulsion import NoRepulsion, inner_cutoff_matrix, switch_off_distances
from .nn.tensor_product import ChannelwiseTensorProduct


class AttnMACE(torch.nn.Module):
    """Energy model with forces and stress by automatic differentiation.

    One neighbour list at ``max(cutoffs)`` is built outside the model; each layer ``s`` keeps the
    edges shorter than ``cutoffs[s]`` (Section 3 of Norwood et al.). Site energies are
    ``E_i = E0[z_i] + shift + scale · Σ_s readout_s(h_i^(s))`` and the per-layer terms are returned
    (the paper's Figure 1d). An optional ZBL pair repulsion acts at very short range only
    (:mod:`attnmace.nn.repulsion`). With ``inner_cutoffs`` in the configuration, each edge's
    distance enters the network through :func:`~attnmace.nn.cutoff.soft_floor`, so below the
    shortest distances it was trained on the network adds no force along the pair and the ZBL
    term, then at full strength, alone repels.

    The forward pass takes and returns dictionaries keyed by :mod:`attnmace.keys`, which keeps
    the TorchScript interface stable across versions.
    """

    cutoffs: List[float]
    r_max: float
    num_layers: int
    num_species: int
    heads: int
    inner_handover: bool
    inner_width: float

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.cutoffs = list(config.cutoffs)
        self.r_max = config.r_max
        self.num_layers = config.num_layers
        self.num_species = len(config.species)
        self.heads = config.heads
        channels = config.channels
        species_irreps = o3.Irreps(f"{self.num_species}x0e")
        self.irreps_sh = natural_irreps(config.sh_max_l)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.embedding = o3.Linear(species_irreps, o3.Irreps(f"{channels}x0e"))
        self.register_buffer("e0s", torch.tensor(config.e0s, dtype=torch.get_default_dtype()))
        self.register_buffer("scale", torch.tensor(config.scale, dtype=torch.get_default_dtype()))
        self.register_buffer("shift", torch.tensor(config.shift, dtype=torch.get_default_dtype()))

        layers, readouts = [], []
        irreps = o3.Irreps(f"{channels}x0e")
        for s, r_cut in enumerate(config.cutoffs):
            last = s == config.num_layers - 1
            out_l = 0 if last else config.max_l
            irreps_out = natural_irreps(out_l, channels)
            product = SymmetricContraction(channels, config.sh_max_l, out_l, config.correlation[s], self.num_species)
            tp = ChannelwiseTensorProduct(irreps, self.irreps_sh, product.irreps_in)
            if config.heads > 0:
                aggregation = AttentionAggregation(
                    tp.irreps_out,
                    irreps,
                    config.heads,
                    config.attn_channels,
                    config.attn_max_l,
                    tp.to_e3nn,
                    logit_cap=config.attn_logit_cap,
                )
            else:
                aggregation = SumAggregation(tp.irreps_out, tp.to_e3nn)
            layers.append(
                InteractionBlock(
                    irreps_in=irreps,
                    irreps_sh=self.irreps_sh,
                    channels=channels,
                    radial=RadialEmbedding(r_cut, config.num_radial, config.envelope_p),
                    radial_mlp=config.radial_mlp,
                    tp=tp,
                    aggregation=aggregation,
                    product=product,
                    irreps_out=irreps_out,
                    num_species=self.num_species,
                    avg_num_neighbors=config.avg_num_neighbors[s],
                )
            )
            readouts.append(MLPReadout(irreps_out, config.readout_mlp) if last else LinearReadout(irreps_out))
            if layers[-1].irreps_in != irreps or readouts[-1].irreps_in != layers[-1].irreps_out:
                raise ValueError(f"layer {s}: irreps do not fit ({irreps} -> {layers[-1]})")
            irreps = irreps_out
        self.layers = torch.nn.ModuleList(layers)
        self.readouts = torch.nn.ModuleList(readouts)
        inner = [list(row) for row in config.inner_cutoffs] if config.inner_cutoffs else None
        self.repulsion = (
            ZBLRepulsion(list(config.atomic_numbers), config.repulsion_factor, inner=inner, width=config.inner_width)
            if config.pair_repulsion
            else NoRepulsion()
        )
        self.inner_handover = inner is not None
        self.inner_width = config.inner_width
        inner_t = inner_cutoff_matrix(inner, self.num_species)
        self.register_buffer("inner_cutoffs", inner_t, persistent=False)  # from the config, not the weights

    def forward(
        self,
        data: Dict[str, torch.Tensor],
        compute_forces: bool = True,
        compute_stress: bool = False,
        compute_attention: bool = False,
        compute_descriptors: bool = False,
    ) -> Dict[str, torch.Tensor]:
        """Energy, forces and stress of a batch of structures.

        Args:
            data: a dictionary with
                ``positions`` ``(n_atoms, 3)`` Å; ``species`` ``(n_atoms,)`` element index;
                ``edge_index`` ``(2, n_edges)``, rows (centre ``i``, neighbour ``j``), at least all
                pairs closer than ``max(cutoffs)`` (longer ones, e.g. a neighbour-list skin, are
                ignored); ``shifts`` ``(n_edges, 3)`` integer cell shifts so
                that ``r_ij = x_j - x_i + shifts @ cell``; ``cell`` ``(n_graphs, 3, 3)``;
                ``batch`` ``(n_atoms,)`` structure index of each atom.
            compute_forces: return ``forces = -dE/dx``.
            compute_stress: return ``stress = (1/V) dE/dε`` and ``virial`` (3-D periodic only).
            compute_attention: return ``attention_<s>`` ``(n_edges_s, heads)`` and
                ``edges_<s>`` ``(n_edges_s,)`` (indices into ``edge_index``) per layer.
            compute_descriptors: return ``node_features_<s>``, the node features ``h^(s)`` after
                each layer ``(n_atoms, irreps.dim)`` in e3nn's layout of
                ``channels x 0e + channels x 1o + ...``: the first ``channels`` columns are the
                invariant (scalar) features; the last layer's are all scalars.

        Returns:
            ``energy`` ``(n_graphs,)`` (float64 whatever the model dtype), ``node_energy``
            ``(n_atoms,)``, ``layer_energy`` ``(n_atoms, n_layers)``, ``repulsion_energy``
            ``(n_atoms,)``, and ``forces`` ``(n_atoms, 3)``, ``stress``/``virial``
            ``(n_graphs, 3, 3)`` when asked for.
        """
        positions = data[keys.POSITIONS]
        cell = data[keys.CELL]
        batch = data[keys.BATCH]
        species = data[keys.SPECIES]
        edge_index = data[keys.EDGE_INDEX]
        num_graphs = cell.shape[0]
        order = torch.argsort(edge_index[0], stable=True)  # edges sorted by centre atom
        receivers, senders = edge_index[0].index_select(0, order), edge_index[1].index_select(0, order)

        if compute_forces and not positions.requires_grad:
            positions.requires_grad_(True)
        strain = torch.zeros(num_graphs, 3, 3, dtype=positions.dtype, device=positions.device)
        if compute_stress:
            strain.requires_grad_(True)
            sym = 0.5 * (strain + strain.transpose(1, 2))
            positions = positions + torch.bmm(positions.unsqueeze(1), sym.index_select(0, batch)).squeeze(1)
            cell = cell + torch.bmm(cell, sym)

        edge_batch = batch.index_select(0, receivers)
        offsets = torch.bmm(
            data[keys.SHIFTS].index_select(0, order).unsqueeze(1), cell.index_select(0, edge_batch)
        ).squeeze(1)
        vectors = positions.index_select(0, senders) - positions.index_select(0, receivers) + offsets
        lengths = torch.linalg.norm(vectors, dim=1)  # (n_edges,)
        within = torch.nonzero(lengths < self.r_max).squeeze(-1)  # drop neighbour-list skin edges
        order, receivers, senders = order[within], receivers[within], senders[within]
        vectors, lengths = vectors[within], lengths[within]
        sh = self.spherical_harmonics(vectors)  # (n_edges, irreps_sh.dim)
        net_lengths = lengths  # what the network's radial basis sees
        if self.inner_handover:
            floor = self.inner_cutoffs[species.index_select(0, receivers), species.index_select(0, senders)]
            net_lengths = soft_floor(lengths, floor.to(lengths.dtype), self.inner_width)

        onehot = torch.nn.functional.one_hot(species, self.num_species).to(positions.dtype)
        h = self.embedding(onehot)
        layer_energies: List[torch.Tensor] = []
        out: Dict[str, torch.Tensor] = {}
        s = 0
        for layer, readout in zip(self.layers, self.readouts):
            selected = torch.nonzero(lengths < self.cutoffs[s]).squeeze(-1)  # this layer's edges
            layer_receivers = receivers.index_select(0, selected)
            # computed here, outside the layer, so that a compiled layer has no host sync
            width = max_neighbours(layer_receivers, h.shape[0]) if self.heads > 0 else 0
            h, alpha = layer(
                h,
                species,
                onehot,
                net_lengths.index_select(0, selected),
                sh.index_select(0, selected),
                senders.index_select(0, selected),
                layer_receivers,
                width,
            )
            layer_energies.append(readout(h))
            if compute_attention:
                out["attention_" + str(s)] = alpha.detach()
                out["edges_" + str(s)] = order.index_select(0, selected)
            if compute_descriptors:
                out["node_features_" + str(s)] = h.detach()
            s += 1

        layer_energy = self.scale * torch.stack(layer_energies, dim=1)  # (n_atoms, n_layers)
        node_energy = self.e0s.index_select(0, species) + self.shift + layer_energy.sum(dim=1)
        repulsion = self.repulsion(species, receivers, senders, lengths)  # (n_atoms,), zeros if disabled
        node_energy = node_energy + repulsion
        out[keys.REPULSION_ENERGY] = repulsion
        # the total is accumulated in float64 even for a float32 model (extensive sums lose digits)
        energy = torch.zeros(num_graphs, dtype=torch.float64, device=node_energy.device)
        energy = energy.index_add(0, batch, node_energy.to(torch.float64))
        out[keys.ENERGY] = energy
        out[keys.NODE_ENERGY] = node_energy
        out[keys.LAYER_ENERGY] = layer_energy

        if compute_forces or compute_stress:
            inputs: List[torch.Tensor] = [data[keys.POSITIONS]]
            if compute_stress:
                inputs.append(strain)
            grads = torch.autograd.grad([energy.sum()], inputs, create_graph=self.training, allow_unused=True)
            if compute_forces:
                g = grads[0]
                out[keys.FORCES] = -g if g is not None else torch.zeros_like(positions)
            if compute_stress:
                g = grads[-1]
                d_strain = g if g is not None else torch.zeros_like(strain)
                volume = torch.linalg.det(data[keys.CELL]).abs().view(-1, 1, 1)
                out[keys.VIRIAL] = -d_strain
                out[keys.STRESS] = d_strain / volume
        return out


def build_model(
    preset: Optional[str] = "attention",
    species=None,
    cutoffs=None,
    *,
    config: Optional[ModelConfig] = None,
    dtype: torch.dtype = torch.float64,
    seed: Optional[int] = None,
    **overrides,
) -> AttnMACE:
    """Build an (untrained) AttnMACE model.

    Args:
        preset: ``"attention"`` (16 channels, 4 heads, L=3, 3 layers) or ``"baseline"`` (64
            channels, no attention, L=3, 3 layers), matching Table 1 of Norwood et al.; ``None``
            uses the :class:`ModelConfig` defaults.
        species: chemical symbols (or atomic numbers) the model knows, e.g. ``["Li", "C"]``.
        cutoffs: one cutoff per layer in Å, e.g. ``(3.0, 5.0, 5.0)``; sets the number of layers.
        config: a complete :class:`ModelConfig` instead of preset/species/overrides.
        dtype: parameter dtype.
        seed: seed for the initial weights.
        **overrides: any :class:`ModelConfig` field (``channels``, ``max_l``, ``heads``,
            ``correlation``, ``num_radial``, ...).

    Returns:
        The model in evaluation mode.
    """
    if config is None:
        if cutoffs is not None:
            overrides["cutoffs"] = tuple(cutoffs)
        if species is not None:
            overrides["species"] = tuple(species)
        config = make_config(preset, **overrides)
    elif overrides or species is not None or cutoffs is not None:
        raise ValueError("pass either config= or preset/species/cutoffs/overrides, not both")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        if seed is not None:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = AttnMACE(config)
        else:
            model = AttnMACE(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype).eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def copy_weights(source: torch.nn.Module, target: AttnMACE) -> AttnMACE:
    """Give ``target`` the weights of ``source`` (an :class:`AttnMACE` of the same configuration,
    or its TorchScript export) and its product bases, which the weights are learned against.

    A model rebuilds its other derived tensors exactly from the configuration, but the coupling
    basis of the symmetric contraction is one of many orthonormal bases of the same space. The
    present construction is the same on every machine (:func:`~attnmace.nn.product.orthonormal_rows`);
    files exported before it hold a basis that an SVD chose on the exporting machine, and their
    weights only mean what they meant there with that basis. So the basis travels with the weights.

    Raises:
        ValueError: ``source`` has no product basis of the target's shape at one of its blocks.
    """
    derived = {name for name, _ in target.named_buffers()} - set(target.state_dict())  # from the config
    target.load_state_dict({k: v for k, v in source.state_dict().items() if k not in derived})
    for name, block in target.named_modules():
        if not isinstance(block, SymmetricContraction):
            continue
        try:
            basis = functools.reduce(getattr, name.split("."), source).basis  # ScriptModules lack get_submodule
        except AttributeError:
            raise ValueError(f"the source model has no product basis at {name}") from None
        if basis.shape != block.basis.shape:
            raise ValueError(
                f"product basis of {name} is {tuple(basis.shape)} in the source, {tuple(block.basis.shape)} here"
            )
        with torch.no_grad():
            block.basis.copy_(basis.to(device=block.basis.device, dtype=block.basis.dtype))
    return target


def with_inner_cutoffs(
    model: torch.nn.Module, config: ModelConfig, inner_cutoffs, width: Optional[float] = None
) -> AttnMACE:
    """A copy of ``model`` (an :class:`AttnMACE` or its TorchScript export, of configuration
    ``config``) whose network hands distances below ``inner_cutoffs`` over to the ZBL term
    (:class:`~attnmace.config.ModelConfig`); ``()`` removes them. Its predictions are the same
    wherever every pair is at least its inner cutoff apart, and also beyond the reach of the
    plain ZBL term that the hand-over replaces; a warning names any pair whose plain term reached
    past its inner cutoff.
    """
    if config.pair_repulsion and inner_cutoffs and not config.inner_cutoffs:
        reach = switch_off_distances(config.atomic_numbers, config.repulsion_factor)
        n = len(config.species)
        reached = [
            f"{config.species[a]}-{config.species[b]} ({reach[a, b]:.2f} Å > {inner_cutoffs[a][b]:.2f} Å)"
            for a in range(n)
            for b in range(a, n)
            if reach[a, b] > inner_cutoffs[a][b]
        ]
        if reached:
            warnings.warn(
                "the plain ZBL term reached past the inner cutoff of " + ", ".join(reached) + ": predictions "
                "of such pairs between the two distances change",
                stacklevel=2,
            )
    changes: Dict[str, object] = {"inner_cutoffs": tuple(tuple(row) for row in inner_cutoffs)}
    if width is not None:
        changes["inner_width"] = float(width)
    new_config = dataclasses.replace(config, **changes)
    dtype = next(model.parameters()).dtype
    return copy_weights(model, build_model(config=new_config, dtype=dtype))


def with_logit_cap(model: torch.nn.Module, config: ModelConfig, cap: float) -> AttnMACE:
    """A copy of ``model`` (an :class:`AttnMACE` or its TorchScript export, of configuration
    ``config``) whose attention logits enter as ``cap·tanh(l/cap)``
    (:attr:`~attnmace.config.ModelConfig.attn_logit_cap`); 0 removes the cap. The weights are
    the same; predictions change only where logits are large against ``cap``.

    Raises:
        ValueError: the model has no attention heads, or ``cap`` is negative or not finite.
    """
    dtype = next(model.parameters()).dtype
    return copy_weights(model, build_model(config=capped_config(config, cap), dtype=dtype))


def capped_config(config: ModelConfig, cap: float) -> ModelConfig:
    """``config`` with the attention logit cap ``cap`` (0: none); the weights it builds are the
    same as ``config``'s.

    Raises:
        ValueError: the configuration has no attention heads, or ``cap`` is negative or not finite.
    """
    if config.heads == 0:
        raise ValueError("this model has no attention heads (heads=0): there are no logits to cap")
    return dataclasses.replace(config, attn_logit_cap=float(cap))
