import pytest

# PyTorch-only: deselected by `-m 'not torch'` (the test command), skipped where it is missing.
pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from agentops_train import config
from agentops_train.models import LeanTransformer, LstmAutoencoder, TransformerAutoencoder, to_patches

L, F = config.SEQUENCE_LENGTH, config.N_FEATURES


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_models_keep_the_sequence_shape_whatever_the_patch(patch):
    torch.manual_seed(0)
    x = torch.randn(3, L, F)
    for model in (LstmAutoencoder(patch=patch), TransformerAutoencoder(patch=patch)):
        assert model.eval()(x).shape == (3, L, F)


def test_a_patch_is_consecutive_windows_of_one_sequence():
    x = torch.arange(2 * L * F, dtype=torch.float32).view(2, L, F)
    p = to_patches(x, L // 4, 4 * F)
    assert p.shape == (2, L // 4, 4 * F)
    assert torch.equal(p[1, 1], x[1, 4:8].reshape(-1))


def test_patched_sequences_of_a_batch_stay_apart():
    # Changing window 5 of sequence 0 changes sequence 0's reconstruction and not sequence 1's.
    torch.manual_seed(0)
    model = TransformerAutoencoder(patch=4).eval()
    x = torch.randn(2, L, F)
    y = x.clone()
    y[0, 5] += 1.0
    with torch.no_grad():
        a, b = model(x), model(y)
    assert not torch.allclose(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_patch_must_divide_the_sequence():
    with pytest.raises(ValueError, match="patch 3"):
        TransformerAutoencoder(patch=3)
    with pytest.raises(ValueError, match="patch 3"):
        LstmAutoencoder(patch=3)


@pytest.mark.parametrize("patch", [1, 4])
def test_lean_transformer_is_the_same_function(patch):
    torch.manual_seed(1)
    model = TransformerAutoencoder(patch=patch).eval()
    x = torch.randn(5, L, F)
    with torch.no_grad():
        assert torch.allclose(LeanTransformer(model).eval()(x), model(x), atol=1e-5)
