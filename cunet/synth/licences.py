"""The General MIDI soundfonts installed here and the licences of soundfonts and MIDI folders, for
`cunet synth`'s choice of soundfonts and its manifest."""

from __future__ import annotations

from pathlib import Path

# Where Debian/Ubuntu packages put General MIDI soundfonts, with their licences.
KNOWN_SOUNDFONTS = {
    "FluidR3_GM.sf2": "MIT (Frank Wen; Debian fluid-soundfont-gm)",
    "MuseScore_General.sf3": "MIT (S. Christian Collins, MuseScore; Debian musescore-general-soundfont)",
    "TimGM6mb.sf2": "GPL-2.0 (Tim Brechbill; Debian timgm6mb-soundfont)",
}
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")


def default_soundfonts() -> list[str]:
    """The General MIDI soundfonts of KNOWN_SOUNDFONTS installed here."""
    found = []
    for name in KNOWN_SOUNDFONTS:
        for folder in SOUNDFONT_DIRS:
            path = Path(folder) / name
            if path.is_file():
                found.append(str(path.resolve()))
                break
    return sorted(set(found), key=found.index)


def soundfont_licence(path: str) -> str:
    name = Path(path).name
    for known, licence in KNOWN_SOUNDFONTS.items():
        if (
            name == known
            or Path(path).resolve().name == known
            or (known.startswith("MuseScore_General") and name.startswith("MuseScore_General"))
        ):
            return licence
    return "unknown: see the soundfont's own notice"


def collection_licence(root: Path) -> str:
    """The licence of a MIDI folder, from its LICENSE/COPYING file (a few well-known texts recognised)."""
    for pattern in ("LICENSE*", "LICENCE*", "COPYING*"):
        for path in sorted(root.glob(pattern)):
            text = path.read_text(errors="replace")[:20000]
            name = path.name
            if "Creative Commons Attribution 4.0" in text:
                return f"CC-BY-4.0 ({name})"
            if "Redistribution and use in source and binary forms" in text:
                return (
                    f"BSD-3-Clause ({name})"
                    if "Neither the name" in text
                    else f"BSD-2-Clause ({name})"
                )
            if "Permission is hereby granted, free of charge" in text:
                return f"MIT ({name})"
            return f"see {name}"
    return "unknown: no LICENSE or COPYING file"
