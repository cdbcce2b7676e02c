"""`cunet ui`: a local web app to separate songs, hear the stems together (mute, solo, karaoke) and download them.

Layers: `security` (token and Host check), `uploads` (streamed, size-limited, decoded before work), `jobs`
(the session's songs; one background thread separates them in order), `results` (downloads and zips),
`app` (the Starlette application and its API), `server` (socket, model, uvicorn, clean-up). The page is
plain HTML, CSS and JavaScript in `static/` (Web Audio API), served by the package: no build step, nothing
fetched from the internet. Needs the `ui` extra (starlette, uvicorn).
"""
