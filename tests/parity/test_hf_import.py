"""Import of Hugging Face Jukebox checkpoints (`import_huggingface`) checked against the port itself.

A tiny `JukeboxModel` (transformers 4.40.2, the last release with the port) with seeded random weights is saved
with `save_pretrained` (sharded `.bin`, as the hub's checkpoints) and as one safetensors file without the aliased
upsampler output projections (what safetensors conversion keeps), imported, and compared with the port:
VQ-VAE codes identical and decodes close on the same audio; every prior's teacher-forced logits close to
`JukeboxPrior.forward_tokens` (for the upsamplers with the port's lyric-loss line patched out: it fails in 4.40.2
for priors without lyrics), their conditioner outputs, and every tensor by the documented renaming.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from openjukebox.checkpoints.huggingface import (
    hf_prior_key_to_original,
    import_huggingface,
    is_huggingface_checkpoint,
)
from openjukebox.checkpoints.prior import load_prior
from openjukebox.checkpoints.vqvae import load_vqvae
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior.keys import rename_prior_key

try:
    import transformers
    from transformers import JukeboxConfig, JukeboxModel, JukeboxPriorConfig, JukeboxVQVAEConfig
except ImportError:
    transformers = None
if transformers is None or transformers.__version__ != "4.40.2":
    _reason = "needs transformers==4.40.2 (the `parity` extra: pip install -e '.[parity]')"
    if os.environ.get("CI") == "true":
        pytest.fail(_reason, pytrace=False)  # CI must never go green by skipping
    pytest.skip(_reason, allow_module_level=True)

from reference_prior import make_inputs

LEVELS = 3


def _tiny_config(kind: str) -> JukeboxConfig:
    """The verified tiny recipe (../shared/reference/oracles.md): `1b` = merged lyrics top, `5b` = lyrics encoder."""
    vq = JukeboxVQVAEConfig(
        nb_discrete_codes=64,
        embed_dim=16,
        levels=3,
        res_conv_width=16,
        res_conv_depth=2,
        multipliers=[1, 1, 1],
        res_downs_t=[3, 2, 2],
        res_strides_t=[2, 2, 2],
    )
    common = dict(hidden_size=32, n_ctx=64, blocks=8, music_vocab_size=64, mask=True)
    if kind == "1b":
        top = JukeboxPriorConfig(
            level=0,
            num_layers=16,
            n_heads=2,
            lyric_vocab_size=80,
            nb_relevant_lyric_tokens=16,
            attention_pattern="enc_dec_with_lyrics",
            alignment_layer=15,
            merged_decoder=False,
            **common,
        )
    else:
        encoder = dict(
            hidden_size=16,
            num_layers=2,
            n_heads=2,
            n_ctx=16,
            blocks=4,
            music_vocab_size=80,
            mask=True,
            attention_pattern="raw_column_previous_row_attention",
            metadata_conditioning=False,
            is_encoder_decoder=False,
        )
        top = JukeboxPriorConfig(
            level=0,
            num_layers=10,
            n_heads=2,
            lyric_vocab_size=80,
            nb_relevant_lyric_tokens=16,
            attention_pattern="large_separated_enc_dec_w_lyrics",
            alignment_layer=9,
            is_encoder_decoder=False,
            merged_decoder=True,
            encoder_config=encoder,
            **common,
        )
    ups = [
        JukeboxPriorConfig(
            level=level,
            num_layers=3,
            n_heads=1,
            attention_pattern="raw_column_previous_row_attention",
            is_encoder_decoder=False,
            merged_decoder=False,
            nb_relevant_lyric_tokens=0,
            res_conv_width=16,
            res_conv_depth=2,
            res_dilation_growth_rate=3,
            metadata_dims=[120, 4111],
            **common,
        )
        for level in (1, 2)
    ]
    return JukeboxConfig(
        vqvae_config=vq.to_dict(),
        prior_config_list=[c.to_dict() for c in (top, *ups)],
        nb_priors=LEVELS,
        min_duration=1.0,
        timing_dims=32,
    )


def _random_model(kind: str) -> JukeboxModel:
    torch.manual_seed(0)
    model = JukeboxModel(_tiny_config(kind)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
        for p in model.vqvae.encoders.parameters():  # larger, so that the latents vary along the audio
            p.normal_(0, 0.3)
        # Codebooks drawn from the encoders' own outputs (random weights give tiny latents): many codes get used.
        audio = torch.randn(1, 1, 8192) * 0.3
        for level in range(LEVELS):
            latents = model.vqvae.encoders[level](audio)[-1][0].t()  # (positions, embed_dim)
            rows = torch.randint(0, latents.shape[0], (64,))
            model.vqvae.bottleneck.level_blocks[level].codebook.copy_(latents[rows] + 1e-3 * torch.randn(64, 16))
    return model


@pytest.fixture(scope="module", params=["1b", "5b"])
def imported(request, tmp_path_factory):
    """(port model, {part: our folder}) for a `.bin` checkpoint sharded by save_pretrained."""
    model = _random_model(request.param)
    root = tmp_path_factory.mktemp(f"hf_{request.param}")
    model.save_pretrained(root / "hf", safe_serialization=False, max_shard_size="400KB")
    assert (root / "hf" / "pytorch_model.bin.index.json").is_file()
    return model, import_huggingface(root / "hf", root / "ours", progress=False)


def test_vqvae_codes_identical_and_decodes_close(imported):
    model, out = imported
    ours = load_vqvae(out["vqvae"])
    audio = torch.randn(2, 4096, generator=torch.Generator().manual_seed(3)) * 0.3  # a multiple of the top hop
    with torch.no_grad():
        theirs = model.vqvae.encode(audio[:, :, None])  # bottom first, as ours
        got = ours.encode(audio, chunk_seconds=None)
        for level in range(LEVELS):
            assert torch.equal(got[level], theirs[level].long()), f"level {level} codes differ"
            assert len(torch.unique(got[level])) > 4  # the comparison is not vacuous
            want = model.vqvae.decode([theirs[level]], start_level=level, end_level=level + 1)[..., 0]
            torch.testing.assert_close(ours.decode(got[level], level, chunk_seconds=None), want, rtol=1e-4, atol=1e-5)


def test_top_prior_logits_match_forward_tokens(imported):
    model, out = imported
    ours = load_prior(out["prior_level_2"]).eval()
    assert ours.config.level == 2 and ours.config.lyrics is not None
    inputs = make_inputs(ours.config, batch=1)
    with torch.no_grad():
        got = ours(inputs["codes"], None, inputs["y"]).logits
        _, metrics = model.priors[0].forward_tokens(inputs["codes"], [], inputs["y"], get_preds=True)
    want = metrics["preds"]
    if ours.config.lyrics.mode == "merged":  # the port predicts [lyrics | music] over the joint vocabulary
        want = want[:, ours.config.n_tokens :, ours.config.lyrics.n_vocab :]
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("level", [1, 0])
def test_upsampler_logits_conditioner_and_tensors_match(imported, level, monkeypatch):
    model, out = imported
    theirs = model.priors[LEVELS - 1 - level]
    ours = load_prior(out[f"prior_level_{level}"]).eval()
    config = ours.config
    assert config.level == level and config.conditioner is not None and config.labels is not None
    inputs = make_inputs(config, batch=1)
    # The port's forward_tokens fails for priors without lyrics (4.40.2: get_encoder_loss reads `.device` of None);
    # that loss is 0 for them, and it is the only line skipped.
    monkeypatch.setattr(theirs, "get_encoder_loss", lambda states, tokens: torch.tensor(0.0))
    with torch.no_grad():
        got = ours(inputs["codes"], inputs["upper"], inputs["y"]).logits
        _, metrics = theirs.forward_tokens(inputs["codes"], [inputs["upper"]], inputs["y"], get_preds=True)
        torch.testing.assert_close(got, metrics["preds"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            ours.conditioner(inputs["upper"]), theirs.conditioner_blocks(inputs["upper"]), rtol=1e-5, atol=1e-5
        )
    # Every tensor of the port's prior, by the documented renaming.
    state = ours.state_dict()
    for key, value in theirs.state_dict().items():
        new_key, transpose = rename_prior_key(hf_prior_key_to_original(key))
        assert torch.equal(state[new_key], value.t() if transpose else value), key
    assert torch.equal(state["prior.x_out.weight"], state["prior.x_emb.weight"])  # tied, as in the port


def test_safetensors_single_file_without_aliases(tmp_path):
    """A safetensors file stores one of each pair of aliased tensors; the other is read from it."""
    from safetensors.torch import save_file

    model = _random_model("1b")
    folder = tmp_path / "hf"
    model.config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("prior.fc_proj_out.weight")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert is_huggingface_checkpoint(folder) and is_huggingface_checkpoint(folder / "model.safetensors")
    out = import_huggingface(folder / "model.safetensors", tmp_path / "ours", progress=False)
    assert sorted(out) == ["prior_level_0", "prior_level_1", "prior_level_2", "vqvae"]
    for level in range(LEVELS):
        ours = load_prior(out[f"prior_level_{level}"]).state_dict()
        for key, value in model.priors[LEVELS - 1 - level].state_dict().items():
            new_key, transpose = rename_prior_key(hf_prior_key_to_original(key))
            assert torch.equal(ours[new_key], value.t() if transpose else value), key


def test_default_locations_are_where_sampling_looks(tmp_path, monkeypatch):
    from openjukebox.checkpoints.hierarchy import resolve_model

    monkeypatch.setenv("OPENJUKEBOX_HOME", str(tmp_path / "home"))
    model = _random_model("1b")
    model.save_pretrained(tmp_path / "hf", safe_serialization=False)
    out = import_huggingface(tmp_path / "hf", progress=False)
    dirs = resolve_model("1b_lyrics")
    assert out == {"vqvae": dirs.vqvae, **{f"prior_level_{lv}": dirs.priors[lv] for lv in range(LEVELS)}}


def test_errors_name_the_file(tmp_path):
    assert not is_huggingface_checkpoint(tmp_path)
    with pytest.raises(OpenJukeboxError, match=r"config\.json: missing"):
        import_huggingface(tmp_path, tmp_path / "out")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(OpenJukeboxError, match="not a Hugging Face Jukebox model"):
        import_huggingface(tmp_path, tmp_path / "out")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "jukebox"}))
    with pytest.raises(OpenJukeboxError, match="expected 3 prior configs"):
        import_huggingface(tmp_path, tmp_path / "out")
    _tiny_config("1b").save_pretrained(tmp_path)
    with pytest.raises(OpenJukeboxError, match="no model weights"):
        import_huggingface(tmp_path, tmp_path / "out")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(OpenJukeboxError, match=r"pytorch_model\.bin: cannot be read"):
        import_huggingface(tmp_path, tmp_path / "out")


def test_config_json_with_prior_n_keys_and_defaults_left_out(tmp_path):
    """Hub-style config.json: priors as prior_0..prior_2 and every value equal to the port's default left out (as
    save_pretrained does for the VQ-VAE config): the same model comes out, so our copy of the defaults is right."""
    model = _random_model("5b")
    model.save_pretrained(tmp_path / "hf", safe_serialization=False)
    reference = import_huggingface(tmp_path / "hf", tmp_path / "a", progress=False)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    prior_defaults = JukeboxPriorConfig().to_dict()
    vqvae_defaults = JukeboxVQVAEConfig().to_dict()

    def diff(values: dict, defaults: dict) -> dict:
        return {k: v for k, v in values.items() if k not in defaults or defaults[k] != v or k == "model_type"}

    for i, prior in enumerate(config.pop("prior_config_list")):
        if prior.get("encoder_config"):
            prior["encoder_config"] = diff(prior["encoder_config"], prior_defaults)
        config[f"prior_{i}"] = diff(prior, prior_defaults)
    config["vqvae_config"] = diff(config["vqvae_config"], vqvae_defaults)
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    out = import_huggingface(tmp_path / "hf", tmp_path / "b", progress=False)
    for part, folder in out.items():
        assert (folder / "config.json").read_text() == (reference[part] / "config.json").read_text(), part
        assert (folder / "model.safetensors").read_bytes() == (reference[part] / "model.safetensors").read_bytes()
