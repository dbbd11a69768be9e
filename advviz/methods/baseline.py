"""Plain cross-entropy training: the reference every adversarial method is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method, MethodConfig, StepOutput, classification_loss


@dataclass(frozen=True)
class BaselineConfig(MethodConfig):
    pass


class Baseline(Method):
    name = "baseline"
    Config = BaselineConfig

    def train_step(self, model, batch, backward) -> StepOutput:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = classification_loss(out, batch["labels"])
        backward(loss)
        return StepOutput(loss.detach(), out.logits.detach())
