"""The learning-curve PNG: a validation panel only when there are validation MAEs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from so3net.train import report  # noqa: E402

UNITS = {"energy": "kcal/mol", "length": "Angstrom"}


@pytest.mark.parametrize("with_valid", [True, False])
def test_panels_follow_the_data(tmp_path, monkeypatch, with_valid):
    history = [{"epoch": e, "train_loss": 1.0 / e, **({"valid_energy_mae": 2.0 / e, "valid_force_mae": 3.0 / e}
                                                      if with_valid else {})} for e in range(1, 6)]
    made = []
    real_subplots = plt.subplots
    monkeypatch.setattr(plt, "subplots", lambda *a, **k: made.append(real_subplots(*a, **k)) or made[-1])
    path = tmp_path / "curve.png"
    report.plot_learning_curve(history, str(path), UNITS)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, axes = made[0]
    assert axes.size == (2 if with_valid else 1)
    assert axes[0, 0].get_lines()[0].get_ydata().tolist() == [h["train_loss"] for h in history]
    if with_valid:
        assert len(axes[0, 1].get_lines()) == 2
