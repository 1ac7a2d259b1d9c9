"""What the GPT speed-run methods share: switch on an option of a built Tessera GPT.

Each speed-run tweak (QK-norm, ReLU², zero-initialised projections, logit soft-capping, value
embeddings, U-net skips, sliding-window attention) is a `GPTConfig` option, so a model trained
with it exports and reloads with it. Its method is surgery on a model built without it: the
plain function changes the live modules and the model's config together (a warning and no
change when the option is already on), and the Algorithm does that at INIT, refusing a model
that already has the option (two ways of asking for one thing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tessera.algorithms.alibi import find_gpt
from tessera.algorithms.common import no_effect_error, warn_no_effect
from tessera.core.algorithm import Algorithm
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


def gpt_needing(model: Any, method: str, **options: Any) -> Any | None:
    """The GPT inside `model`, or None (with a NoEffectWarning) when its config already has
    every one of `options`."""
    gpt = find_gpt(model, method)
    if all(getattr(gpt.config, key) == value for key, value in options.items()):
        shown = ", ".join(f"{key}: {value}" for key, value in options.items())
        warn_no_effect(method, f"the model already has {shown}")
        return None
    return gpt


def record(gpt: Any, **options: Any) -> None:
    """Write the options into the GPT's config, so the exported model reloads with them."""
    gpt.config = gpt.config.model_copy(update=options)


class GPTOptionMethod(Algorithm):
    """Base of the speed-run methods: surgery at INIT, refused when the option is already on.

    A subclass names the config field it switches (`option`) and implements `change`."""

    option: ClassVar[str] = ""
    runs_before = ("compile",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        reason = self.nothing_to_do(find_gpt(state.model, self.name).config)
        if reason is not None:
            raise no_effect_error(self.name, reason)
        self.change(state)

    def nothing_to_do(self, config: Any) -> str | None:
        """Why this model needs no change (None: it does): by default, the option is on."""
        value = getattr(config, self.option)
        if value == type(config).model_fields[self.option].default:
            return None
        return f"the model already has {self.option}: {value} (its model section); keep one"

    def change(self, state: State) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
