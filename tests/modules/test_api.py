"""The module API's read-only values: frozen_mapping gives what the plain recursive copy gives."""

from __future__ import annotations

import collections
from types import MappingProxyType
from typing import Any, Mapping

from hypothesis import given
from hypothesis import strategies as st

from modules.api import SetState, SubscriberView, frozen_mapping


def reference_frozen_mapping(value: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """frozen_mapping without fast paths: every node is visited and copied."""

    def freeze(item: Any) -> Any:
        if isinstance(item, Mapping):
            return MappingProxyType({str(k): freeze(v) for k, v in item.items()})
        if isinstance(item, (list, tuple)):
            return tuple(freeze(v) for v in item)
        return item

    return freeze(value or {})


def shape(value: Any) -> Any:
    """``value`` with the type of every node, so True, 1 and 1.0 (or a dict and a proxy) differ."""
    if isinstance(value, Mapping):
        return (type(value), tuple((type(k), k, shape(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(shape(v) for v in value))
    return (type(value), value)


Pair = collections.namedtuple("Pair", "a b")

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
keys = st.text(max_size=5) | st.integers(-3, 3) | st.booleans()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.tuples(inner, inner).map(lambda t: Pair(*t))
        | st.dictionaries(keys, inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4).map(MappingProxyType)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=20,
)
mappings = (
    st.dictionaries(keys, values, max_size=5)
    | st.dictionaries(st.text(max_size=5), values, max_size=5).map(MappingProxyType)
    | st.dictionaries(st.text(max_size=5), values, max_size=5).map(frozen_mapping)
)


@given(value=mappings | st.none())
def test_frozen_mapping_matches_the_plain_copy(value: Mapping[Any, Any] | None) -> None:
    """Same keys, values and node types as the copy that freezes every node."""
    assert shape(frozen_mapping(value)) == shape(reference_frozen_mapping(value))


@given(value=st.dictionaries(st.text(max_size=5), values, min_size=1, max_size=5))
def test_frozen_mapping_is_a_copy(value: dict[str, Any]) -> None:
    """Changing the input afterwards, or the dict behind a proxy, leaves the frozen value alone."""
    expected = shape(reference_frozen_mapping(value))
    frozen = frozen_mapping(value)
    of_proxy = frozen_mapping(MappingProxyType(value))
    value.clear()
    assert shape(frozen) == shape(of_proxy) == expected


def test_frozen_mapping_in_values() -> None:
    """The attrs fields that use it hold read-only mappings, empty by default."""
    view = SubscriberView(ref="r", state={"votes": 1, "topics": ["a"], "nested": {"x": [1]}})
    assert isinstance(view.state, MappingProxyType) and isinstance(view.attributes, MappingProxyType)
    assert view.state == {"votes": 1, "topics": ("a",), "nested": {"x": (1,)}}
    assert dict(view.attributes) == {}
    assert SetState({1: "a"}).state == {"1": "a"}
