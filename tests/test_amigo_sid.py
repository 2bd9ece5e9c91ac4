"""AmIGO (warm-started double loop) and SID/BSGM (no warm start): specific tests."""

import numpy as np
import pytest
from skbilevel.problems import QuadraticBilevelProblem, make_quadratic_problem
from skbilevel.solvers.amigo import AmIGO
from skbilevel.solvers.sid import FIRST_STEPS, SID


class RecordingQuadratic(QuadraticBilevelProblem):
    """A quadratic problem that records every oracle call the solvers make.

    ``calls`` holds ``(name, vector, n_rows)``: the ``z`` of ``inner_grad``,
    the ``v`` of ``inner_hvp``, None for ``inner_cross`` and ``outer_grad``;
    ``hvp_points`` the ``z`` of every ``inner_hvp``.
    """

    def __init__(self, n_train=50, n_val=30, random_state=0):
        base = make_quadratic_problem(n_train=n_train, n_val=n_val,
                                      random_state=random_state)
        super().__init__(base.A, base.B, base.C, base.Fx, base.mu, base.nu)
        self.base = base
        self.calls, self.hvp_points = [], []

    def _record(self, name, vector, rows, n_rows):
        size = n_rows if rows is None else len(rows)
        self.calls.append((name, None if vector is None else vector.copy(), size))

    def inner_grad(self, z, x, rows=None):
        self._record("grad", z, rows, self.n_train)
        return super().inner_grad(z, x, rows)

    def inner_hvp(self, z, x, v, rows=None):
        self._record("hvp", v, rows, self.n_train)
        self.hvp_points.append(z.copy())
        return super().inner_hvp(z, x, v, rows)

    def inner_cross(self, z, x, v, rows=None):
        self._record("cross", None, rows, self.n_train)
        return super().inner_cross(z, x, v, rows)

    def outer_grad(self, z, x, rows=None):
        self._record("outer", None, rows, self.n_val)
        return super().outer_grad(z, x, rows)

    def vectors(self, name):
        return [vector for kind, vector, _ in self.calls if kind == name]

    def rows(self, name):
        return [n_rows for kind, _, n_rows in self.calls if kind == name]

    def training_rows(self):
        return sum(n for kind, _, n in self.calls if kind in ("grad", "hvp", "cross"))


def _solves(vectors):
    """Split the iterates a solver passed to an oracle into solves started at 0."""
    solves = []
    for vector in vectors:
        if not np.any(vector):
            solves.append([])
        solves[-1].append(vector)
    return solves


def _relative_error(problem, x):
    x_star = problem.solution()
    return np.linalg.norm(x - x_star) / np.linalg.norm(x_star)


def _gap(problem, h0, h_star, exact_h, x):
    return (exact_h(problem, x) - h_star) / (h0 - h_star)


# -- AmIGO -------------------------------------------------------------------


@pytest.mark.parametrize("linear_solver, epochs", [("gd", 2000), ("cg", 1000)])
def test_amigo_reaches_quadratic_solution(linear_solver, epochs):
    problem = make_quadratic_problem(n_train=50, n_val=30, random_state=0)
    result = AmIGO(linear_solver=linear_solver).solve(problem, max_epochs=epochs,
                                                      random_state=0)
    assert _relative_error(problem, result.x) <= 1e-4


@pytest.mark.parametrize("linear_solver, epochs", [("gd", 200), ("cg", 500)])
def test_amigo_reduces_logistic_gap(linear_solver, epochs, logistic, exact_h):
    problem, h0, h_star = logistic
    result = AmIGO(linear_solver=linear_solver).solve(problem, max_epochs=epochs,
                                                      random_state=0)
    assert _gap(problem, h0, h_star, exact_h, result.x) <= 1e-2


def test_amigo_warm_starts_both_solvers():
    problem = RecordingQuadratic(n_train=200, n_val=100)
    solver = AmIGO(batch_size=16, n_inner_steps=5, n_linear_steps=5, outer_step_size=0.05)
    solver.solve(problem, x0=np.full(problem.n_outer, 0.5), max_epochs=5, random_state=0)
    grads, hvps = problem.vectors("grad"), problem.vectors("hvp")
    # Only the very first solves start at zero; each later one starts where the last ended.
    assert len(problem.rows("cross")) >= 2
    assert len(_solves(grads)) == 1 and len(_solves(hvps)) == 1


def test_amigo_cg_solves_the_batch_system_exactly_on_full_batches():
    problem = RecordingQuadratic()  # n_train = 50 <= 8 * batch_size: CG on all rows
    solver = AmIGO(linear_solver="cg", n_inner_steps=2, n_linear_steps=problem.n_inner,
                   outer_step_size=0.1)
    result = solver.solve(problem, max_epochs=problem.n_inner + 4, random_state=0)
    # After one outer iteration, v solves d11 G(z, x) v = -d1 F: here v* itself.
    np.testing.assert_allclose(result.v, problem.linear_system_solution(None),
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("linear_solver", ["gd", "cg"])
def test_amigo_counts_every_training_row(linear_solver):
    problem = RecordingQuadratic(n_train=400, n_val=100)
    solver = AmIGO(batch_size=16, n_inner_steps=20, n_linear_steps=10,
                   linear_solver=linear_solver, cg_batch_size=48, outer_batch_size=64,
                   outer_step_size=0.01)
    result = solver.solve(problem, max_epochs=12, random_state=0)
    assert result.history["epoch"][-1] * problem.n_train == pytest.approx(
        problem.training_rows())
    # One outer iteration: T inner batches, N linear-system batches (CG: N + 1
    # products on its batch, for the initial residual) and D_G.
    per_iteration = 20 * 16 + (11 * 48 if linear_solver == "cg" else 10 * 16) + 64
    training = [(kind, n) for kind, _, n in problem.calls if kind in ("grad", "hvp", "cross")]
    rows_done = np.cumsum([n for _, n in training])
    ends = [i for i, (kind, _) in enumerate(training) if kind == "cross"]
    assert len(ends) >= 3
    np.testing.assert_array_equal(np.diff(rows_done[ends], prepend=0), per_iteration)
    assert problem.rows("hvp")[0] == (48 if linear_solver == "cg" else 16)
    assert problem.rows("outer")[:len(ends)] == [64] * len(ends)
    assert solver._outer_updates_per_epoch(problem) == pytest.approx(400 / per_iteration)


def test_amigo_parameter_validation():
    problem = make_quadratic_problem(n_train=20, n_val=10, random_state=0)
    with pytest.raises(ValueError, match="linear_solver"):
        AmIGO(linear_solver="newton").solve(problem, max_epochs=1)
    with pytest.raises(ValueError, match="n_linear_steps"):
        AmIGO(n_linear_steps=0).solve(problem, max_epochs=1)


# -- SID -----------------------------------------------------------------------


def test_sid_restarts_every_solve_from_zero():
    problem = RecordingQuadratic()
    x0 = np.full(problem.n_outer, 0.5)  # d1 G(0, x0) != 0: the iterates leave 0
    solver = SID(n_inner_steps=5, n_linear_steps=7, outer_step_size=0.05)
    result = solver.solve(problem, x0=x0, max_epochs=80, random_state=0)
    inner, linear = _solves(problem.vectors("grad")), _solves(problem.vectors("hvp"))
    # Every outer iteration restarts both solvers at 0 (a warm start would
    # make a single solve, as AmIGO's in test_amigo_warm_starts_both_solvers).
    assert len(inner) >= 6 and len(linear) >= 6
    assert all(len(solve) == 5 for solve in inner[:-1])
    assert all(len(solve) == 7 for solve in linear[:-1])
    assert all(np.any(solve[1]) for solve in inner + linear if len(solve) > 1)
    # ... although x moved, and the previous solves ended far from 0.
    assert np.linalg.norm(result.x - x0) > 0.1
    assert min(np.linalg.norm(solve[-1]) for solve in linear[:-1]) > 1.0
    # The state keeps the last completed solves (here z_t of the last linear
    # solve, which completed), for reporting only.
    assert len(linear[-1]) == 7
    np.testing.assert_array_equal(result.z, problem.hvp_points[-1])
    assert result.history["epoch"][-1] * problem.n_train == pytest.approx(
        problem.training_rows())


def test_sid_growing_schedule_grows_steps_and_batches():
    problem = RecordingQuadratic(n_train=600, n_val=600)
    solver = SID(batch_size=4, schedule="growing", growth=1, outer_step_size=0.01)
    solver.solve(problem, x0=np.full(problem.n_outer, 0.5), max_epochs=1, random_state=0)
    inner = [len(solve) for solve in _solves(problem.vectors("grad"))]
    linear = [len(solve) for solve in _solves(problem.vectors("hvp"))]
    n_done = len(problem.rows("cross"))
    assert n_done >= 6
    # 001: t_s = k_s = ceil(c3 (s + 1)) and J_s = t_s * batch_size rows.
    assert inner[:n_done] == list(range(1, n_done + 1))
    assert linear[:n_done] == list(range(1, n_done + 1))
    assert problem.rows("outer")[:n_done] == [4 * s for s in range(1, n_done + 1)]
    assert problem.rows("cross") == [4 * s for s in range(1, n_done + 1)]


def test_sid_adaptive_steps_double_until_the_solves_are_accurate():
    problem = RecordingQuadratic()
    solver = SID(outer_step_size=0.5)
    result = solver.solve(problem, max_epochs=3000, random_state=0)
    lengths = [len(solve) for solve in _solves(problem.vectors("hvp"))]
    assert lengths[0] == FIRST_STEPS
    assert set(lengths[:-1]) <= {FIRST_STEPS * 2**i for i in range(8)}
    assert lengths[:-1] == sorted(lengths[:-1])
    assert max(lengths) >= 16 * FIRST_STEPS  # more as the hypergradient shrinks
    # Every row counts, the truncation estimate's batch included (n_train = 50:
    # full batches, J = all rows).
    assert result.history["epoch"][-1] * problem.n_train == pytest.approx(
        problem.training_rows())
    first = 2 * FIRST_STEPS * 50 + 50 + 2 * 50
    assert solver._outer_updates_per_epoch(problem) == pytest.approx(50 / first)


def _recovered_steps(problem, x, iterates):
    """The step of each full-batch inner update at ``x``, from consecutive iterates."""
    steps = []
    for z, z_next in zip(iterates[:-1], iterates[1:]):
        # z_next = (z - step * (d1 G(z) - mu z)) / (1 + step * mu)
        data = problem.base.inner_grad(z, x) - problem.mu * z
        direction = -(data + problem.mu * z_next)
        steps.append((z_next - z) @ direction / (direction @ direction))
    return np.array(steps)


@pytest.mark.parametrize("step_rule", ["constant", "decreasing"])
def test_sid_step_rules(step_rule):
    problem = RecordingQuadratic()
    x0 = np.full(problem.n_outer, 0.5)
    solver = SID(n_inner_steps=40, n_linear_steps=40, step_rule=step_rule,
                 outer_step_size=1e-12)
    result = solver.solve(problem, x0=x0, max_epochs=40, random_state=0)
    rho = result.history["inner_step"][-1]
    steps = _recovered_steps(problem, x0, _solves(problem.vectors("grad"))[0])
    assert len(steps) == 39
    if step_rule == "constant":
        np.testing.assert_allclose(steps, rho, rtol=1e-6)
    else:
        # 004 section 6: rho * beta / (beta + i), beta = 2 / (1 - q^2),
        # q = 1 / (1 + rho mu), at most the number of steps.
        q = 1.0 / (1.0 + rho * problem.mu)
        beta = min(2.0 / (1.0 - q * q), 40)
        np.testing.assert_allclose(steps, rho * beta / (beta + np.arange(39)), rtol=1e-6)
        assert steps[-1] < 0.6 * steps[0]


def test_sid_reaches_quadratic_solution_with_growing_schedule():
    problem = make_quadratic_problem(n_train=50, n_val=30, random_state=0)
    result = SID(schedule="growing").solve(problem, max_epochs=20000, random_state=0)
    assert _relative_error(problem, result.x) <= 1e-4


def test_sid_parameter_validation():
    problem = make_quadratic_problem(n_train=20, n_val=10, random_state=0)
    with pytest.raises(ValueError, match="schedule"):
        SID(schedule="linear").solve(problem, max_epochs=1)
    with pytest.raises(ValueError, match="step_rule"):
        SID(step_rule="adam").solve(problem, max_epochs=1)
    with pytest.raises(ValueError, match="growth"):
        SID(schedule="growing", growth=0).solve(problem, max_epochs=1)
