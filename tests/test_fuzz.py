"""Fuzzing the two parsers users feed text to: sweep specs and A1111 infotext."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.infotext import format_infotext, parse_infotext
from workbench.schedulers import SCHEDULERS
from workbench.spec import AXES, spec_from_dict

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)
spec_keys = st.sampled_from([*AXES, "mode", "max_trials", "adapters", "control_image", "resolution", "model",
                             "metrics", "unknown_key"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(spec_keys, json_values, max_size=6))
def test_spec_parser_never_crashes(data):
    """Any mapping either becomes a valid spec or raises ValueError (never TypeError, KeyError...)."""
    try:
        spec_from_dict(data)
    except ValueError:
        pass


numbers = st.floats(min_value=0, max_value=20, allow_nan=False).map(lambda x: round(x, 3))
valid_specs = st.builds(
    lambda scales, seeds, prompt, guidance, mode: {"conditioning_scale": scales, "seed": seeds, "prompt": [prompt],
                                                   "guidance": guidance, "mode": mode},
    st.lists(numbers, min_size=1, max_size=4), st.lists(st.integers(0, 2**31), min_size=1, max_size=4),
    st.text(max_size=40), st.lists(numbers, min_size=1, max_size=2), st.just("product"))


@settings(max_examples=100, deadline=None)
@given(valid_specs)
def test_valid_specs_round_trip_through_yaml(tmp_path_factory, data):
    from workbench.spec import load_spec
    spec = spec_from_dict(data)
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    spec.save(path)
    assert load_spec(path) == spec


plain_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                     max_size=30)
trial_params = st.fixed_dictionaries({
    "prompt": plain_text.filter(lambda t: "\n" not in t and "<lora:" not in t and not t.startswith("Negative prompt:")
                                 and t.strip() == t and t != ""),
    "negative_prompt": plain_text.filter(lambda t: "\n" not in t and t.strip() == t),
    "conditioning_scale": numbers, "control_guidance_start": st.just(0.0), "control_guidance_end": numbers.map(lambda x: min(x, 1)),
    "adapter": st.none() | st.sampled_from(["rank4", "style_a"]), "lora_weight": numbers,
    "guidance": numbers, "steps": st.integers(1, 150), "scheduler": st.sampled_from(sorted(SCHEDULERS)),
    "canny_low": st.integers(0, 255), "canny_high": st.integers(0, 500), "seed": st.integers(0, 2**32),
    "control_image": st.sampled_from(["toy:a red circle on a blue background", "pics/a, b.png", 'say "hi".png']),
})


@settings(max_examples=300, deadline=None)
@given(trial_params)
def test_infotext_round_trips(params):
    parsed = parse_infotext(format_infotext(params, 64, 64, "toy", "abc123"))
    for name, value in params.items():
        if name == "lora_weight" and params["adapter"] is None:
            continue  # without an adapter the weight is not written, as in A1111
        if name == "adapter" and value is None:
            assert "adapter" not in parsed
            continue
        assert parsed[name] == value or (isinstance(value, float) and math.isclose(parsed[name], value)), name


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_infotext_parser_never_crashes(text):
    try:
        parse_infotext(text)
    except ValueError:
        pass
