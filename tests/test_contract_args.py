"""The contract's arguments in every pillar: a key that is not a JAX PRNG key, and a fitted model
of another pillar, are refused at the entry point with the fix (not deep inside JAX)."""
import jax
import numpy as np
import pytest

from jaxscale import chinchilla as ch
from jaxscale import context_law, learning_curves, ncpl, observational
from tests.helpers import chinchilla_runs

PILLARS = {"jaxscale.chinchilla": ch, "jaxscale.learning_curves": learning_curves,
           "jaxscale.observational": observational, "jaxscale.context_law": context_law, "jaxscale.ncpl": ncpl}


@pytest.fixture(scope="module")
def chin():
    df = chinchilla_runs()
    data = ch.from_frame(df, n_col="params", d_col="tokens", loss_col="val_loss")
    return df, ch.fit(jax.random.key(0), data, ch.Spec(screen_steps=20, polish_top=8))


@pytest.mark.parametrize("name", list(PILLARS))
@pytest.mark.parametrize("key", [0, None, np.float64(1.0)])
def test_fit_refuses_a_key_that_is_not_a_prng_key(name, key):
    with pytest.raises(ValueError, match=r"key must be a JAX PRNG key, e.g. jax.random.key\(0\)"):
        PILLARS[name].fit(key, None)


@pytest.mark.parametrize("name", [n for n in PILLARS if n != "jaxscale.chinchilla"])
def test_predict_names_the_pillar_of_another_pillars_fit(name, chin):
    df, fit = chin
    with pytest.raises(ValueError, match=rf"{name}.predict takes the \w+ of {name}.fit .* got a ChinchillaFit: "
                                         r"it is a fit of jaxscale.chinchilla, use jaxscale.chinchilla.predict"):
        PILLARS[name].predict(fit, df)


def test_predict_refuses_a_seed_for_a_key_and_takes_both_key_kinds(chin):
    df, fit = chin
    with pytest.raises(ValueError, match="Chinchilla predict: key must be a JAX PRNG key.*got int 3"):
        ch.predict(fit, df, key=3)
    with pytest.raises(ValueError, match="got a Prediction"):
        ch.predict(ch.predict(fit, df), df)
    new = ch.predict(fit, df, key=jax.random.key(1))
    old = ch.predict(fit, df, key=jax.random.PRNGKey(1))
    assert new.lower.shape == old.lower.shape == (len(df),)


def test_ncpl_fit_core_names_prepare_when_given_data():
    from tests.test_ncpl_contract import _runs

    data = ncpl.from_frame(_runs(), target_col="loss", n_col="N", d_col="D", exclude_cols=["run"])
    with pytest.raises(ValueError, match=r"fit_core\(key, ncpl.prepare\(key, data, spec\), spec\)"):
        ncpl.fit_core(jax.random.key(0), data, ncpl.Spec())


@pytest.mark.parametrize("field, value", [("n_boot", -1), ("boot_steps", 0), ("max_steps", 0),
                                          ("huber_delta", 0.0), ("backtest_frac", 1.0)])
def test_chinchilla_refuses_a_spec_out_of_range(field, value):
    data = ch.from_frame(chinchilla_runs(), n_col="params", d_col="tokens", loss_col="val_loss")
    with pytest.raises(ValueError, match=rf"Chinchilla fit: Spec.{field} must be"):
        ch.fit(jax.random.key(0), data, ch.Spec(**{field: value}))


def test_chinchilla_refuses_an_empty_query_as_the_other_pillars_do(chin):
    df, fit = chin
    with pytest.raises(ValueError, match=r"the table has no rows; give one row per run \(with 'params' and 'tokens'\)"):
        ch.predict(fit, df.iloc[:0][["params", "tokens"]])
