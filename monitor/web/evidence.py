"""A case's evidence in the review app: its images, and the DSL's evidence pack.

Images are served only for a case the viewer may open (``visible_case``), only of the image
kinds (card, live screenshot, the post's own media; never the raw payload or metadata), only
from inside the evidence directory and only while their bytes still match the hash in the
evidence log. A case tagged as suspected child sexual imagery has no image at all: none is
stored, and the route refuses it regardless. The evidence pack is the same ZIP as
``vigil evidence export`` builds, for DSLs only, and every export is audited.
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib import metadata
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions.custody import CHILD_IMAGERY_TAG, ExportArchive, build_export, safe_relpath
from monitor.evidence_cmd import EXPORT_EVENT, evidence_root
from monitor.store.evidence_log import load_case
from monitor.web.auth import Viewer, requires
from monitor.web.pages import DSL_ONLY, EVERYONE, actor, web_context
from monitor.web.review import case_not_found, image_type, visible_case

__all__ = ["evidence_routes"]


def evidence_routes() -> list[Route]:
    """The evidence image and the evidence pack routes."""
    return [
        Route(
            "/cases/{id:int}/evidence/{evidence_id:int}/{n:int}",
            evidence_image,
            methods=["GET"],
        ),
        Route("/cases/{id:int}/export", export_pack, methods=["GET"]),
    ]


@requires(*EVERYONE)
async def evidence_image(request: Request, viewer: Viewer) -> Response:
    """One evidence image of a case the viewer may open (read from the evidence directory)."""
    case = await visible_case(request, viewer)
    if case is None or CHILD_IMAGERY_TAG in case.tags:
        return case_not_found(request, viewer)
    evidence_id, n = int(request.path_params["evidence_id"]), int(request.path_params["n"])
    files = [ev.files for ev in case.evidence if ev.evidence_id == evidence_id]
    if not files or not 0 <= n < len(files[0]):
        return case_not_found(request, viewer)
    file = files[0][n]
    media_type = image_type(file)
    root = evidence_root(web_context(request).settings)
    data = None
    if media_type is not None:
        data = await asyncio.to_thread(
            _read_inside, root, str(file.get("relpath", "")), str(file.get("sha256", ""))
        )
    if data is None:
        return case_not_found(request, viewer)
    return Response(
        data, media_type=media_type, headers={"content-disposition": "inline; filename=evidence"}
    )


def _read_inside(root: Path, relpath: str, sha256: str) -> bytes | None:
    """The file's bytes if it is inside ``root`` and still has the logged hash, else None."""
    if not safe_relpath(relpath):
        return None
    try:
        base = root.resolve()
        path = (base / relpath).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return None
        data = path.read_bytes()
    except OSError:  # unreadable: the page shows no image rather than an error
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


@requires(*DSL_ONLY)
async def export_pack(request: Request, viewer: Viewer) -> Response:
    """The case's evidence pack as a ZIP (the same archive as ``vigil evidence export``)."""
    case = await visible_case(request, viewer)
    if case is None:
        return case_not_found(request, viewer)
    context = web_context(request)
    store = context.require_store()
    bundle = await load_case(store, case.case_id)
    if bundle is None:
        return case_not_found(request, viewer)
    now = context.clock()
    archive = await asyncio.to_thread(
        build_export,
        bundle,
        evidence_root(context.settings),
        exported_at=now,
        exported_by=actor(viewer),
        tool=_tool(),
    )
    name = f"vigil-case-{case.case_id}-evidence.zip"
    await store.audit(
        school_id=case.school_id,
        actor=actor(viewer),
        event=EXPORT_EVENT,
        subject_type="case",
        subject_id=case.case_id,
        detail=_audit_detail(name, archive),
        now=now,
    )
    return Response(
        archive.data,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def _audit_detail(name: str, archive: ExportArchive) -> dict[str, object]:
    """What the audit log keeps about an export (as ``vigil evidence export`` does)."""
    return {
        "file": name,
        "sha256": archive.sha256,
        "entries": archive.entries,
        "intact": not archive.problems,
        "child_imagery": archive.child_imagery,
        "via": "web",
    }


def _tool() -> str:
    try:
        return f"vigil {metadata.version('vigil')} (web)"
    except metadata.PackageNotFoundError:
        return "vigil (web)"
