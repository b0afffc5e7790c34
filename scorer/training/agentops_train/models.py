"""The two autoencoders. Both map [batch, L, F] -> [batch, L, F] and squeeze the sequence through
a small latent vector, so that what does not look like normal traffic is reconstructed badly."""

from __future__ import annotations

import math

import torch
from torch import nn

from . import config


def patch_count(seq_len: int, patch: int) -> int:
    """How many patches of `patch` consecutive windows a sequence of `seq_len` windows holds."""
    if seq_len % patch:
        raise ValueError(f"patch {patch} must divide the sequence length {seq_len}")
    return seq_len // patch


def to_patches(x: torch.Tensor, patches: int, width: int) -> torch.Tensor:
    """[batch, L, F] -> [batch, patches, width = L / patches * F]: patch k holds windows
    k * L / patches .. (k + 1) * L / patches - 1 of its own sequence, feature-major per window."""
    return x.reshape(-1, patches, width)


class LstmAutoencoder(nn.Module):
    """LSTM encoder -> latent (last hidden state, projected) -> LSTM decoder fed the latent at every
    step -> linear head. With `patch` > 1 each recurrent step reads and writes `patch` consecutive
    windows (L / patch steps of patch * F values), which divides the sequential work by `patch`."""

    def __init__(self, n_features: int = config.N_FEATURES, seq_len: int = config.SEQUENCE_LENGTH,
                 hidden: int = 32, latent: int = 8, patch: int = 1):
        super().__init__()
        self.seq_len, self.n_features, self.patch = seq_len, n_features, patch
        self.steps = patch_count(seq_len, patch)
        self.encoder = nn.LSTM(n_features * patch, hidden, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent)
        self.decoder = nn.LSTM(latent, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_features * patch)
        self.hparams = {"hidden": hidden, "latent": latent, "patch": patch}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.encoder(to_patches(x, self.steps, self.n_features * self.patch))
        z = torch.tanh(self.to_latent(h[-1]))  # [B, latent]
        z_seq = z.unsqueeze(1).expand(-1, self.steps, -1)
        out, _ = self.decoder(z_seq)
        return self.head(out).reshape(-1, self.seq_len, self.n_features)


def sinusoidal_encoding(length: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class TransformerAutoencoder(nn.Module):
    """Linear input projection + sinusoidal positions -> TransformerEncoder (self-attention, pre-norm)
    -> flatten -> latent (the bottleneck) -> unflatten + positions -> one more self-attention layer
    -> linear reconstruction head. With `patch` > 1 a token is `patch` consecutive windows (as in
    PatchTST): L / patch tokens of patch * F values, so attention and the layers run on fewer rows."""

    def __init__(self, n_features: int = config.N_FEATURES, seq_len: int = config.SEQUENCE_LENGTH,
                 d_model: int = 32, heads: int = 4, layers: int = 2, ff: int = 64, latent: int = 8,
                 patch: int = 1):
        super().__init__()
        self.n_features, self.patch = n_features, patch
        self.tokens = patch_count(seq_len, patch)
        self.d_model = d_model
        self.input_proj = nn.Linear(n_features * patch, d_model)
        self.register_buffer("pos", sinusoidal_encoding(self.tokens, d_model), persistent=True)

        def layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=ff, dropout=0.0,
                                              batch_first=True, norm_first=True)

        self.encoder = nn.TransformerEncoder(layer(), layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.to_latent = nn.Linear(self.tokens * d_model, latent)
        self.from_latent = nn.Linear(latent, self.tokens * d_model)
        self.decoder = nn.TransformerEncoder(layer(), 1, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_features * patch)
        self.hparams = {"d_model": d_model, "heads": heads, "layers": layers, "ff": ff, "latent": latent,
                        "patch": patch, "decoder_layers": 1, "norm_first": True}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.input_proj(to_patches(x, self.tokens, self.n_features * self.patch)) + self.pos)
        z = torch.tanh(self.to_latent(h.flatten(1)))  # [B, latent]
        d = self.from_latent(z).view(-1, self.tokens, self.d_model) + self.pos
        return self.head(self.decoder(d)).reshape(-1, self.tokens * self.patch, self.n_features)


class LeanTransformer(nn.Module):
    """The function of a trained `TransformerAutoencoder`, written for a lean ONNX graph (what
    the scorer runs), with the same weights: the linears work on [batch * L, d] (one Gemm each,
    bias fused), and attention runs per head on slices of the packed projection (one small
    transpose per head), instead of the reshapes and transposes of `nn.MultiheadAttention`'s
    export; the 1/sqrt(head dim) query scaling is folded into the projection weights. Equal to
    the original within float rounding (checked before export)."""

    def __init__(self, ae: TransformerAutoencoder):
        super().__init__()
        self.tokens, self.d_model = ae.tokens, ae.d_model
        self.n_features, self.patch = ae.n_features, ae.patch
        self.heads = ae.encoder.layers[0].self_attn.num_heads
        self.input_proj, self.to_latent, self.from_latent, self.head = (
            ae.input_proj, ae.to_latent, ae.from_latent, ae.head)
        self.register_buffer("pos", ae.pos.clone(), persistent=True)
        self.encoder_layers = nn.ModuleList(ae.encoder.layers)
        self.encoder_norm = ae.encoder.norm
        self.decoder_layers = nn.ModuleList(ae.decoder.layers)
        self.decoder_norm = ae.decoder.norm
        d, dh = self.d_model, self.d_model // self.heads
        for layer in list(self.encoder_layers) + list(self.decoder_layers):
            attn = layer.self_attn
            w = attn.in_proj_weight.detach().clone()
            b = attn.in_proj_bias.detach().clone()
            w[:d] *= dh ** -0.5
            b[:d] *= dh ** -0.5
            layer.register_buffer("lean_in_w", w, persistent=True)
            layer.register_buffer("lean_in_b", b, persistent=True)
        self.hparams = ae.hparams

    def _attention(self, layer, h: torch.Tensor) -> torch.Tensor:
        # h: [B * L, d] -> [B * L, d]
        d, dh, length = self.d_model, self.d_model // self.heads, self.tokens
        qkv = torch.nn.functional.linear(h, layer.lean_in_w, layer.lean_in_b).view(-1, length, 3 * d)
        outs = []
        for i in range(self.heads):
            q = qkv[..., i * dh:(i + 1) * dh]
            k = qkv[..., d + i * dh:d + (i + 1) * dh]
            v = qkv[..., 2 * d + i * dh:2 * d + (i + 1) * dh]
            outs.append(torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v)
        o = torch.cat(outs, dim=-1).reshape(-1, d)
        return layer.self_attn.out_proj(o)

    def _layer(self, layer, h: torch.Tensor) -> torch.Tensor:
        # Pre-norm encoder layer (norm_first, ReLU, no dropout), as nn.TransformerEncoderLayer.
        h = h + self._attention(layer, layer.norm1(h))
        return h + layer.linear2(torch.relu(layer.linear1(layer.norm2(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, d = self.tokens, self.d_model
        h = (self.input_proj(to_patches(x, length, self.n_features * self.patch)) + self.pos).reshape(-1, d)
        for layer in self.encoder_layers:
            h = self._layer(layer, h)
        h = self.encoder_norm(h).reshape(-1, length * d)
        z = torch.tanh(self.to_latent(h))
        h = (self.from_latent(z).view(-1, length, d) + self.pos).reshape(-1, d)
        for layer in self.decoder_layers:
            h = self._layer(layer, h)
        return self.head(self.decoder_norm(h)).view(-1, length * self.patch, self.n_features)


def build(kind: str, sizes: dict | None = None) -> nn.Module:
    """A model of `kind` with its default sizes, or `sizes` (constructor keyword arguments)."""
    if kind == "lstm":
        return LstmAutoencoder(**(sizes or {}))
    if kind == "transformer":
        return TransformerAutoencoder(**(sizes or {}))
    raise ValueError(kind)
