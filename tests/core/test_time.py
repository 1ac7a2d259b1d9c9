import pytest

from tessera.core.errors import ConfigError
from tessera.core.time import Time, Timestamp, TimeUnit


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("10ep", 10, TimeUnit.EPOCH),
        ("500ba", 500, TimeUnit.BATCH),
        ("4096sp", 4096, TimeUnit.SAMPLE),
        ("1e6tok", 1_000_000, TimeUnit.TOKEN),
        ("0.25dur", 0.25, TimeUnit.DURATION),
    ],
)
def test_parse_units(text, value, unit):
    time = Time.parse(text)
    assert time.value == value and time.unit == unit
    assert Time.parse(str(time)) == time


@pytest.mark.parametrize("text", ["10", "ep", "3 bananas", "1.5ep", "2dur", "-1ba", "10eps"])
def test_bad_strings_name_the_field_and_units(text):
    with pytest.raises(ConfigError) as info:
        Time.parse(text, field="max_duration")
    assert str(info.value).startswith("max_duration: ")


def test_bad_unit_lists_accepted_units():
    with pytest.raises(ConfigError, match="'ep', 'ba', 'sp', 'tok', 'dur'"):
        Time.parse("3days", field="eval_interval")


def test_comparisons_and_arithmetic():
    assert Time.parse("2ep") < Time.parse("3ep")
    assert Time.parse("100ba") + Time.parse("50ba") == Time.parse("150ba")
    assert Time.parse("100ba") * 1.5 == Time.parse("150ba")
    with pytest.raises(ValueError, match="different units"):
        _ = Time.parse("2ep") < Time.parse("3ba")


def test_integer_is_epochs():
    assert Time.coerce(3) == Time(3, TimeUnit.EPOCH)


def test_timestamp_counts_totals_and_within_epoch():
    ts = Timestamp()
    ts = ts.after_batch(samples=32, tokens=320).after_batch(samples=16, tokens=160)
    assert (ts.batch, ts.sample, ts.token) == (2, 48, 480)
    assert (ts.batch_in_epoch, ts.sample_in_epoch) == (2, 48)
    ts = ts.after_epoch().after_batch(samples=32)
    assert ts.epoch == 1 and ts.batch == 3 and ts.batch_in_epoch == 1 and ts.sample_in_epoch == 32
    assert Timestamp.from_state_dict(ts.state_dict()) == ts
    assert ts.get("sp") == 80
