"""The context-mixing page model (``page_model``): several causal context models, a logistic
mixer and an APM, started from a state fitted on real documents. Its parameters name that state
(by the id of its file) and the adaptive pixel the encoder placed at the image's period."""
from __future__ import annotations

from ..errors import ArchiveError
from ..page_model import PERIOD_CANDIDATES, Scratch, check_at, choose, period_candidates, sample_size
from .base import Encoded, PayloadMethod, split_flat

ID_BYTES = 8
SAMPLE_MARGIN = 1.25      # a sample's first images pay for the adaptation the rest enjoy: give it room


class Pages(PayloadMethod):
    name, code = "pages", 5
    rows_per_byte = 8 * 65536             # a repeated row costs one flag, P <= 1 - 2^-16

    def params_bytes(self, fields: dict) -> bytes:
        dy, dx = fields["at"]
        return bytes.fromhex(fields["state"]) + bytes([-dy, dx + 128])

    def read_params(self, raw: bytes, payload_bytes: int) -> dict:
        if len(raw) != ID_BYTES + 2:
            raise ArchiveError("corrupted archive: bad page-model parameters")
        return {"state": raw[:ID_BYTES].hex(), "at": check_at((-raw[ID_BYTES], raw[ID_BYTES + 1] - 128))}

    def worth_trying(self, images, models, best_bytes, ahead=None) -> bool:
        """With a size to beat: the first fitted state's bytes on the sample the encoder would
        choose its state by (``page_model.sample``), scaled to the whole chunk."""
        if best_bytes is None:
            return True
        sample_bytes, sample_pixels = sample_size(models.pages[0], list(images))
        total = sum(image.size for image in images)
        return sample_bytes * total / max(sample_pixels, 1) < SAMPLE_MARGIN * best_bytes

    def encode(self, images, models, progress=None, verify=False, unordered=False) -> Encoded:
        images = list(images)
        candidates = period_candidates(max(images, key=lambda im: im.size), PERIOD_CANDIDATES)
        scratch = Scratch()                     # the probes' working state, then the encoder's
        model, at = choose(models.pages, images, candidates, scratch)
        fields = {"state": model.state_id, "at": at}
        if verify:                  # checked by a decoder reading the encoder's bytes as they come
            payload, check = model.encode_checked(images, at, models.verifier(), scratch)
            return Encoded(payload, fields, verified=check)
        payload, at = model.encode(images, at, scratch)
        return Encoded(payload, fields)

    def validate(self, chunk, shapes, models, unordered) -> None:
        models.page_state_path(chunk.fields["state"])   # ModelUnavailable names a missing state
        super().validate(chunk, shapes, models, unordered)

    def decode(self, chunk, shapes, models, progress=None) -> list:
        model = models.pages_to_use_up(chunk.fields["state"])
        return split_flat(model.decode(chunk.payload, shapes, chunk.fields["at"], in_place=True), shapes)
