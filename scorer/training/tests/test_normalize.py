import numpy as np

from agentops_train import config
from agentops_train.normalize import Normalizer


def test_fit_is_robust_and_ignores_undefined():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_000, config.N_FEATURES))
    x[:, 1] = 0.25  # constant: IQR 0 -> small positive scale
    x[:100, :4] = np.nan  # empty windows: left out of the rate statistics
    x[:100, 4] = 0.0
    n = Normalizer.fit(x)
    ref = x[100:]
    q25, q50, q75 = np.percentile(ref[:, 0], [25, 50, 75])
    assert np.isclose(n.median[0], q50) and np.isclose(n.scale[0], (q75 - q25) / 1.349)
    assert n.median[1] == 0.25 and n.scale[1] == config.MIN_SCALE
    q25, q50, q75 = np.percentile(x[:, 4], [25, 50, 75])  # log_tasks: all windows
    assert np.isclose(n.median[4], q50) and np.isclose(n.scale[4], (q75 - q25) / 1.349)


def test_transform_clips_imputes_and_masks():
    n = Normalizer(np.array([1.0, 0, 0, 0, 2.0]), np.array([0.5, 1, 1, 1, 1.0]), clip=10.0)
    z, m = n.transform(np.array([[2.0, np.nan, 100.0, -100.0, 0.0]]))
    assert z.dtype == np.float32 and m.dtype == np.float32
    assert z.tolist() == [[2.0, 0.0, 10.0, -10.0, -2.0]]
    assert m.tolist() == [[1, 0, 1, 1, 1]]
    assert Normalizer.from_json(n.to_json()).to_json() == n.to_json()
