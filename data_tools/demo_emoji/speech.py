"""Speak short phrases with the eSpeak NG library bundled in ``espeakng-loader``, through ctypes.

eSpeak keeps global state (one voice, one callback per process), so one ``Speaker`` per process;
parallel builds use processes, never threads.
"""

from __future__ import annotations

import ctypes
import difflib
import itertools

import numpy as np

from data_tools.demo_emoji.sources import require
from mmcl.errors import UserError

# emoji's language code -> eSpeak NG voice name, where they differ (eSpeak calls Mandarin "cmn").
# Known weak spot: the ja voice reads kana only; it says "Chinese letter" for kanji, found in 73% of Japanese names.
DEFAULT_VOICES = {"en": "en-us", "zh": "cmn"}

_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns once the callback has had every sample
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Voice(ctypes.Structure):  # espeak_VOICE in speak_lib.h
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


def voice_for(language: str, voices: dict[str, str] | None = None) -> str:
    return (voices or {}).get(language) or DEFAULT_VOICES.get(language, language)


class Speaker:
    """``Speaker().say(text)`` -> int16 mono samples at ``Speaker.rate`` Hz (22,050 for eSpeak NG)."""

    def __init__(self) -> None:
        loader = require("espeakng_loader")
        lib = ctypes.CDLL(loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
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
            close = difflib.get_close_matches(voice, self.voices(), n=5, cutoff=0.5)
            raise UserError(f"eSpeak NG has no voice {voice!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))

    def voices(self) -> list[str]:
        """The language code of every installed voice, e.g. en-us, es, cmn."""
        listed, codes = self._lib.espeak_ListVoices(None), []
        for i in itertools.count():
            if not listed[i]:
                return codes
            # ``languages`` is a priority byte followed by the code.
            codes.append(listed[i].contents.languages[1:].decode())

    def say(self, text: str) -> np.ndarray:
        self._chunks.clear()
        data = text.encode()
        error = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if error != 0:
            raise RuntimeError(f"espeak_Synth failed ({error}) on {text!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
