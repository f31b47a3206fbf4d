"""Fine-tuned models through the client: list, read and delete them."""

from __future__ import annotations

from tuneforge.client.base import BaseClient, page_query
from tuneforge.schemas.models import ModelList, ModelPublic


class ModelsClient(BaseClient):
    """The client's model methods."""

    def list_models(self, offset: int = 0, limit: int = 50) -> ModelList:
        params = page_query(offset, limit)
        return ModelList.model_validate(self._call("GET", "/models", params=params))

    def get_model(self, model_id: str) -> ModelPublic:
        return ModelPublic.model_validate(self._call("GET", f"/models/{model_id}"))

    def delete_model(self, model_id: str) -> None:
        self._call("DELETE", f"/models/{model_id}")
