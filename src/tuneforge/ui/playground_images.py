"""The Playground's images: attached with the image button, dropped anywhere on the page or
pasted into it, they wait above the message box as thumbnails and go, in the next message, to
both columns.

Every way in goes through one hidden Quasar uploader (a drop or a paste hands its files to it),
so a large file streams to the server over HTTP instead of through the websocket; the server
checks it as every chat image is checked (size and type from its header, before decoding) and
keeps its thumbnail. A text-only model among the columns is named at once, and nothing is sent
to it.
"""

from __future__ import annotations

import asyncio
import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field

from nicegui import ui
from nicegui.events import UploadEventArguments

from tuneforge.data.images import thumbnail
from tuneforge.data.limits import size_text
from tuneforge.errors import DomainError
from tuneforge.inference.params import MAX_IMAGES, TextPart
from tuneforge.schemas.chat import ChatImagePart, ChatPart, ChatTurn, ImageUrl
from tuneforge.services.chat_images import checked
from tuneforge.settings import Settings

THUMBNAIL_PIXELS = 160
CSS = """
.playground-thumb { width: 96px; height: 96px; object-fit: cover; border-radius: 6px; }
.playground-turn-image { max-width: 160px; max-height: 160px; border-radius: 6px; }
body.playground-dragging .playground-prompt { outline: 2px dashed var(--q-primary); }
"""
# Drop an image anywhere on the page, or paste one: it goes to the (hidden) uploader, which
# posts it to the server as the image button's files go. Set up once per browser tab.
DROP_AND_PASTE = """
(() => {
  const uploader = () => getElement(%(id)s)?.$refs.qRef;
  const images = (list) => Array.from(list || []).filter((f) => f.type.startsWith("image/"));
  const hasFiles = (e) => Array.from(e.dataTransfer?.types || []).includes("Files");
  if (window.__playgroundImages) {
    window.__playgroundImages.uploader = uploader;
    return;
  }
  window.__playgroundImages = { uploader };
  document.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    document.body.classList.add("playground-dragging");
  });
  document.addEventListener("dragleave", (e) => {
    if (e.relatedTarget === null) document.body.classList.remove("playground-dragging");
  });
  document.addEventListener("drop", (e) => {
    document.body.classList.remove("playground-dragging");
    if (!hasFiles(e)) return;
    e.preventDefault();
    const files = images(e.dataTransfer.files);
    if (files.length) window.__playgroundImages.uploader()?.addFiles(files);
  });
  document.addEventListener("paste", (e) => {
    const files = images(e.clipboardData?.files);
    if (!files.length) return;
    e.preventDefault();
    window.__playgroundImages.uploader()?.addFiles(files);
  });
})();
"""


@dataclass
class Said:
    """A message as sent, with the thumbnails of its images to show."""

    turn: ChatTurn
    thumbs: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        content = self.turn.content
        if isinstance(content, str):
            return content
        return "".join(part.text for part in content if isinstance(part, TextPart))


@dataclass
class Attached:
    """An image waiting above the message box."""

    name: str
    data_url: str
    thumb: str


class ImageTray:
    """The images attached to the next message, and the ways to attach them."""

    def __init__(
        self,
        settings: Settings,
        seeing: set[str],
        names: dict[str, str],
        models: Callable[[], list[str]],
    ) -> None:
        self.settings = settings
        self.seeing, self.names, self.models = seeing, names, models
        self.pending: list[Attached] = []
        self.limit = settings.chat_image_max_bytes
        self.uploader = (
            ui.upload(
                auto_upload=True, multiple=True, max_file_size=self.limit, on_upload=self._received
            )
            .props('accept="image/*"')
            .classes("hidden playground-upload")
        )
        # Emptied in the browser once no upload is under way (so the same image can be attached
        # again): emptied at each file's arrival, it would abort one dropped right after it.
        empty = f"() => getElement({self.uploader.id}).$refs.qRef.reset()"
        self.uploader.on("finish", js_handler=empty)
        self.uploader.on_rejected(
            lambda: ui.notify(
                f"Only images (PNG, JPEG, WebP, GIF) of at most {size_text(self.limit)} can be "
                "attached.",
                type="warning",
            )
        )
        ui.run_javascript(DROP_AND_PASTE % {"id": self.uploader.id})
        self.show()

    def pick(self) -> None:
        """Open the browser's file picker."""
        self.uploader.run_method("pickFiles")

    def blind(self) -> str:
        """'X does not take images' for the chosen models that do not ('' when all do)."""
        blind = [self.names.get(m, m) for m in self.models() if m not in self.seeing]
        if not blind:
            return ""
        return f"{' and '.join(blind)} {'does' if len(blind) == 1 else 'do'} not take images"

    def take(self, message: str) -> Said:
        """The user's message with the attached images (first, as Gemma's examples put them),
        emptying the tray."""
        images, self.pending = self.pending, []
        self.show.refresh()
        if not images:
            return Said(ChatTurn(role="user", content=message))
        parts: list[ChatPart] = [
            ChatImagePart(image_url=ImageUrl(url=image.data_url)) for image in images
        ]
        if message:
            parts.append(TextPart(text=message))
        return Said(ChatTurn(role="user", content=parts), [image.thumb for image in images])

    async def _received(self, event: UploadEventArguments) -> None:
        if len(self.pending) >= MAX_IMAGES:
            ui.notify(f"A message takes at most {MAX_IMAGES} images.", type="warning")
            return
        if event.file.size() > self.limit:
            ui.notify(f"Images can be at most {size_text(self.limit)}.", type="warning")
            return
        data = await event.file.read()
        try:
            facts = await asyncio.to_thread(checked, data, self.settings, event.file.name)
            thumb = await asyncio.to_thread(thumbnail, data, THUMBNAIL_PIXELS)
        except DomainError as exc:
            ui.notify(exc.message, type="warning")
            return
        url = f"data:image/{facts.format.lower()};base64," + base64.b64encode(data).decode()
        self.pending.append(Attached(event.file.name, url, thumb))
        self.show.refresh()

    def _remove(self, item: Attached) -> None:
        self.pending.remove(item)
        self.show.refresh()

    @ui.refreshable_method
    def show(self) -> None:
        if not self.pending:
            return
        with ui.row().classes("w-full items-center gap-2 playground-attachments"):
            for item in self.pending:
                with ui.element("div").classes("relative-position playground-attachment"):
                    name = html.escape(item.name, quote=True)
                    ui.html(f'<img src="{item.thumb}" class="playground-thumb" alt="{name}">')
                    ui.button(icon="close", on_click=lambda i=item: self._remove(i)).props(
                        "round dense size=xs color=grey-8"
                    ).classes("absolute-top-right playground-attachment-remove").tooltip(
                        f"Remove {item.name}"
                    )
            if blind := self.blind():
                with ui.row().classes("items-center no-wrap gap-1 text-body2 text-warning"):
                    ui.icon("visibility_off")
                    ui.label(f"{blind}: pick a vision model to send this.").classes(
                        "playground-images-refused"
                    )
