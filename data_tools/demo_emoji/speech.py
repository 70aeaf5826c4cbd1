"""Speak short phrases with the eSpeak NG library bundled in ``espeakng-loader``, through ctypes.

eSpeak keeps global state (one voice, one callback per process), so one ``Speaker`` per process;
parallel builds use processes, never threads.
"""

from __future__ import annotations

import ctypes

import numpy as np

from data_tools.demo_emoji.sources import require
from mmcl.errors import UserError

# emoji's language code -> eSpeak NG voice name, where they differ (eSpeak calls Mandarin "cmn").
# Known weak spot: the ja voice reads kana only; it says "Chinese letter" for kanji, found in 73% of Japanese names.
DEFAULT_VOICES = {"en": "en-us", "zh": "cmn"}

_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns once the callback has had every sample
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def voice_for(language: str, voices: dict[str, str] | None = None) -> str:
    return (voices or {}).get(language) or DEFAULT_VOICES.get(language, language)


class Speaker:
    """``Speaker().say(text)`` -> int16 mono samples at ``Speaker.rate`` Hz (22,050 for eSpeak NG)."""

    def __init__(self) -> None:
        loader = require("espeakng_loader")
        lib = ctypes.CDLL(loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.rate})")
        self._lib, self._chunks = lib, []
        self._callback = _CALLBACK(self._collect)  # kept on self: eSpeak holds only a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, count: int, _events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = go on synthesising

    def set_voice(self, voice: str) -> None:
        # A failed call keeps the previous voice, so a typo would silently speak in the wrong language.
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise UserError(f"eSpeak NG has no voice {voice!r} (see `espeak-ng --voices`, e.g. en-us, es, fr, de, cmn)")

    def say(self, text: str) -> np.ndarray:
        self._chunks.clear()
        data = text.encode()
        error = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if error != 0:
            raise RuntimeError(f"espeak_Synth failed ({error}) on {text!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
