"""`cunet ui`: a local web app to separate songs, hear the stems while they are separated (mute, solo, karaoke)
and download them.

Layers: `failures` (every error as one JSON line, quiet logs), `addresses` (this machine's addresses),
`security` (token and Host check), `uploads` (streamed, size-limited, decoded before work), `growing` (an
upload read while it arrives), `live` (the stems' frames, from their files as they are written, to the page),
`separation` (one song's separation, as `cunet separate` writes it), `jobs` (the session's songs; one
background thread separates them in order), `intake` (an upload becoming a song), `results` (downloads and
zips), `app` (the Starlette application and its API), `protocol` (connections: head timeout, cap, JSON 400s),
`server` (socket, model, warm-up, uvicorn, the browser's opener file, clean-up). The page is plain HTML, CSS and
JavaScript in `static/` (Web Audio API), served by the package: no build step, nothing fetched from the
internet. Needs the `ui` extra (starlette, uvicorn).
"""
