import torch

from genforge.data.patches import AreaWeightedPool, step_generator


def test_pool_draws_in_proportion_to_area():
    pool = AreaWeightedPool([(torch.zeros(1, 10, 10),), (torch.zeros(3, 10, 30), torch.zeros(1, 10, 30))])
    assert pool.weights.dtype == torch.get_default_dtype()
    assert AreaWeightedPool(pool.items, dtype=torch.float64).weights.tolist() == [0.25, 0.75]
    drawn = pool.indices(20_000, step_generator(0, 0))
    assert abs(sum(drawn) / len(drawn) - 0.75) < 0.02


def test_step_generator_is_a_pure_function_of_seed_step_and_rank():
    def draw(*args):
        return torch.rand(4, generator=step_generator(*args))

    assert torch.equal(draw(3, 5, 1), draw(3, 5, 1))
    assert not torch.equal(draw(3, 5), draw(3, 6)) and not torch.equal(draw(3, 5), draw(4, 5))
    assert not torch.equal(draw(3, 5, 0), draw(3, 5, 1))
