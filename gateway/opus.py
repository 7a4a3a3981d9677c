"""libopus through ctypes: decoding with in-band FEC and loss concealment, and a tunable encoder.

PyAV exposes neither ``decode_fec`` nor concealment nor the encoder CTLs we need (in-band FEC,
expected loss, mono voice bitrate), and the PyPI bindings (opuslib, opuslib-next) add a layer
of Python objects per call on the hot path without exposing more than the C API does. ctypes
over the system's ``libopus.so.0`` (Debian's libopus0) is a dozen C functions, costs ~1 µs per
call, and falls back to the copy of libopus bundled in PyAV's wheel when the system has none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from functools import cache

import numpy as np

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
MAX_PACKET = 1500

APPLICATION_VOIP = 2048
SIGNAL_VOICE = 3001
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_DTX = 4016
_SET_SIGNAL = 4024

_Int16Pointer = ctypes.POINTER(ctypes.c_int16)


class OpusError(RuntimeError):
    pass


@cache
def _library() -> ctypes.CDLL:
    candidates = [ctypes.util.find_library("opus"), "libopus.so.0"]
    import av  # noqa: F401 - only to locate the libopus its wheel bundles

    candidates += sorted(glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libopus*.so*")))
    for candidate in filter(None, candidates):
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, _Int16Pointer, ctypes.c_int,
                                    ctypes.c_int]
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_encoder_create.restype = ctypes.c_void_p
        lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.opus_encode.restype = ctypes.c_int32
        lib.opus_encode.argtypes = [ctypes.c_void_p, _Int16Pointer, ctypes.c_int, ctypes.c_char_p, ctypes.c_int32]
        lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_encoder_ctl.restype = ctypes.c_int
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_strerror.argtypes = [ctypes.c_int]
        return lib
    raise OpusError("libopus not found: install Debian's libopus0 (apt-get install libopus0)")


def _check(code: int) -> int:
    if code < 0:
        raise OpusError(_library().opus_strerror(code).decode())
    return code


class OpusDecoder:
    """Mono 48 kHz decoder that can also recover a lost frame (FEC) or invent one (PLC)."""

    def __init__(self, rate: int = RATE, channels: int = 1) -> None:
        self._lib = _library()
        error = ctypes.c_int()
        self._state = self._lib.opus_decoder_create(rate, channels, ctypes.byref(error))
        _check(error.value)
        self._channels = channels
        self._out = np.empty(FRAME_SAMPLES * 6 * channels, np.int16)  # room for 120 ms
        self._out_pointer = self._out.ctypes.data_as(_Int16Pointer)

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.opus_decoder_destroy(self._state)
            self._state = None

    def _run(self, payload: bytes | None, samples: int, fec: int) -> np.ndarray:
        size = len(payload) if payload else 0
        count = _check(self._lib.opus_decode(self._state, payload, size, self._out_pointer, samples, fec))
        return self._out[:count * self._channels].copy()

    def decode(self, payload: bytes) -> np.ndarray:
        return self._run(payload, len(self._out) // self._channels, 0)

    def decode_fec(self, next_payload: bytes, samples: int = FRAME_SAMPLES) -> np.ndarray:
        """The frame *before* ``next_payload``, rebuilt from the redundancy it carries (or
        concealed, when it carries none)."""
        return self._run(next_payload, samples, 1)

    def conceal(self, samples: int = FRAME_SAMPLES) -> np.ndarray:
        """Packet-loss concealment: a plausible continuation that fades out over repeated losses."""
        return self._run(None, samples, 0)


class OpusEncoder:
    """Mono voice encoder with in-band FEC, its expected loss adjustable during the call."""

    def __init__(self, rate: int = RATE, channels: int = 1, *, bitrate: int = 32000, fec: bool = True,
                 loss_percent: int = 5, complexity: int = 5) -> None:
        self._lib = _library()
        error = ctypes.c_int()
        self._state = self._lib.opus_encoder_create(rate, channels, APPLICATION_VOIP, ctypes.byref(error))
        _check(error.value)
        self._buffer = ctypes.create_string_buffer(MAX_PACKET)
        self._ctl(_SET_SIGNAL, SIGNAL_VOICE)
        self._ctl(_SET_COMPLEXITY, complexity)
        self.set_bitrate(bitrate)
        self.set_inband_fec(fec)
        self.set_packet_loss_perc(loss_percent)

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.opus_encoder_destroy(self._state)
            self._state = None

    def _ctl(self, request: int, value: int) -> None:
        # Variadic: every argument needs an explicit C type (a bare int would truncate the pointer).
        _check(self._lib.opus_encoder_ctl(ctypes.c_void_p(self._state), ctypes.c_int(request), ctypes.c_int(value)))

    def set_bitrate(self, bitrate: int) -> None:
        self._ctl(_SET_BITRATE, bitrate)

    def set_inband_fec(self, enabled: bool) -> None:
        self._ctl(_SET_INBAND_FEC, int(enabled))

    def set_packet_loss_perc(self, percent: int) -> None:
        """Expected loss: libopus spends more bits on redundancy as this grows (0 = none)."""
        self.loss_percent = max(0, min(100, int(percent)))
        self._ctl(_SET_PACKET_LOSS_PERC, self.loss_percent)

    def encode(self, pcm: np.ndarray) -> bytes:
        samples = np.ascontiguousarray(pcm, np.int16)
        size = _check(self._lib.opus_encode(self._state, samples.ctypes.data_as(_Int16Pointer), len(samples),
                                            self._buffer, MAX_PACKET))
        return self._buffer.raw[:size]
