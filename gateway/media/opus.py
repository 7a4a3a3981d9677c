"""libopus through ctypes: decoding with in-band FEC and loss concealment, and a tunable encoder.

Why ctypes over the C library, and which library:

- PyAV (what aiortc uses) reaches libopus through libavcodec, which exposes neither
  ``decode_fec`` nor concealment nor the encoder CTLs a lossy network needs (in-band FEC,
  expected loss). The PyPI bindings (opuslib, opuslib-next) are ctypes too, but wrap every call
  in extra Python layers and still need a system libopus; a dozen prototypes here cost less per
  frame (measured in ``bench/codec_costs.py``) and keep the whole binding in this module.
- The library is Debian's ``libopus0`` (``scripts/setup_codec.sh``): it decodes packets a
  stranger sends us, so it should get the distribution's security updates. If the system has
  none, the copy of libopus bundled in PyAV's wheel (``av.libs/``) is used instead and a warning
  says so; both speak the same stable C ABI.

Per-frame costs stay low by binding prototypes once, decoding into one preallocated buffer and
never converting through ``av.AudioFrame``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
import os
from functools import cache

import numpy as np

from ..core.audio_format import WEBRTC_FRAME, WEBRTC_RATE

logger = logging.getLogger(__name__)

MAX_FRAME_SAMPLES = 5760  # 120 ms, the longest Opus packet
MAX_PACKET = 1500

APPLICATIONS = {"voip": 2048, "audio": 2049, "restricted_lowdelay": 2051}
BANDWIDTHS = {"narrowband": 1101, "mediumband": 1102, "wideband": 1103, "superwideband": 1104, "fullband": 1105}
SIGNAL_VOICE = 3001
_SET_BITRATE = 4002
_SET_MAX_BANDWIDTH = 4004
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_DTX = 4016
_SET_SIGNAL = 4024

_Int16Pointer = ctypes.POINTER(ctypes.c_int16)


class OpusError(RuntimeError):
    """libopus refused something: a corrupt packet, an invalid setting."""


def _candidates() -> list[str]:
    system = list(dict.fromkeys(filter(None, [ctypes.util.find_library("opus"), "libopus.so.0"])))
    try:
        import av  # only to locate the libopus its wheel bundles
    except ImportError:  # pragma: no cover - av is a dependency of aiortc
        return system
    bundled = sorted(glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libopus*.so*")))
    return system + bundled


@cache
def libopus(path: str | None = None) -> ctypes.CDLL:
    """The loaded library with its prototypes declared; ``path`` forces one (benchmarks)."""
    for candidate in [path] if path else _candidates():
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        _declare(lib)
        if path is None and "av.libs" in candidate:
            logger.warning("system libopus not found, using the copy inside PyAV's wheel (%s); "
                           "install Debian's libopus0 for security updates", version(lib))
        return lib
    raise OpusError("libopus not found: install Debian's libopus0 (scripts/setup_codec.sh)")


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_int32, c_void_p, c_char_p = ctypes.c_int, ctypes.c_int32, ctypes.c_void_p, ctypes.c_char_p
    lib.opus_decoder_create.restype = c_void_p
    lib.opus_decoder_create.argtypes = [c_int32, c_int, ctypes.POINTER(c_int)]
    lib.opus_decode.restype = c_int
    lib.opus_decode.argtypes = [c_void_p, c_char_p, c_int32, _Int16Pointer, c_int, c_int]
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_encoder_create.restype = c_void_p
    lib.opus_encoder_create.argtypes = [c_int32, c_int, c_int, ctypes.POINTER(c_int)]
    lib.opus_encode.restype = c_int32
    lib.opus_encode.argtypes = [c_void_p, _Int16Pointer, c_int, c_char_p, c_int32]
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_encoder_ctl.restype = c_int  # variadic: arguments are typed at each call
    lib.opus_strerror.restype = c_char_p
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_get_version_string.restype = c_char_p


def version(lib: ctypes.CDLL | None = None) -> str:
    return (lib or libopus()).opus_get_version_string().decode()


def _check(lib: ctypes.CDLL, code: int) -> int:
    if code < 0:
        raise OpusError(lib.opus_strerror(code).decode())
    return code


class OpusDecoder:
    """Decoder that can also rebuild a lost frame (FEC) or invent one (PLC).

    Not thread-safe; one per stream. ``decode_fec``/``conceal`` must be called in stream order,
    in place of the lost frame, for libopus to keep its state continuous.
    """

    def __init__(self, rate: int = WEBRTC_RATE, channels: int = 1, *, library: ctypes.CDLL | None = None) -> None:
        lib = self._lib = library or libopus()
        error = ctypes.c_int()
        self._state = lib.opus_decoder_create(rate, channels, ctypes.byref(error))
        _check(lib, error.value)
        self._decode = lib.opus_decode
        self._channels = channels
        self._max_samples = MAX_FRAME_SAMPLES * rate // WEBRTC_RATE
        self._out = np.empty(self._max_samples * channels, np.int16)
        self._out_pointer = self._out.ctypes.data_as(_Int16Pointer)

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.opus_decoder_destroy(self._state)
            self._state = None

    def _run(self, payload: bytes | None, samples: int, fec: int) -> np.ndarray:
        count = self._decode(self._state, payload, len(payload) if payload else 0, self._out_pointer, samples, fec)
        if count < 0:
            raise OpusError(self._lib.opus_strerror(count).decode())
        return self._out[:count * self._channels].copy()

    def decode(self, payload: bytes) -> np.ndarray:
        """Interleaved int16 samples of one packet (960 per channel for a 20 ms packet)."""
        return self._run(payload, self._max_samples, 0)

    def decode_fec(self, next_payload: bytes, samples: int = WEBRTC_FRAME) -> np.ndarray:
        """The lost frame *before* ``next_payload``, rebuilt from the redundancy (LBRR) it carries;
        libopus falls back to concealment when it carries none. Then decode ``next_payload``
        itself normally."""
        return self._run(next_payload, samples, 1)

    def conceal(self, samples: int = WEBRTC_FRAME) -> np.ndarray:
        """Packet-loss concealment: extrapolates the last sound, fading to silence over repeated
        losses."""
        return self._run(None, samples, 0)


class OpusEncoder:
    """Voice encoder with in-band FEC whose bitrate and expected loss can change mid-call.

    ``complexity`` (0–10) is the main CPU knob: on this machine a 20 ms speech frame costs
    ~90 µs at 1 (SILK wideband only), ~170 µs at 2–3 (hybrid super-wideband), ~220 µs at 5 and
    ~420 µs at 8–10, for a few tenths of a PESQ point (see ``bench/codec_costs.py``).
    """

    def __init__(self, rate: int = WEBRTC_RATE, channels: int = 1, *, bitrate: int = 32000, application: str = "voip",
                 fec: bool = True, loss_percent: int = 5, complexity: int = 5, max_bandwidth: str = "fullband",
                 library: ctypes.CDLL | None = None) -> None:
        if application not in APPLICATIONS:
            raise ValueError(f"application must be one of {sorted(APPLICATIONS)}, not {application!r}")
        lib = self._lib = library or libopus()
        error = ctypes.c_int()
        self._state = lib.opus_encoder_create(rate, channels, APPLICATIONS[application], ctypes.byref(error))
        _check(lib, error.value)
        self._encode = lib.opus_encode
        self._channels = channels
        self._buffer = ctypes.create_string_buffer(MAX_PACKET)
        self._ctl(_SET_SIGNAL, SIGNAL_VOICE)
        self.set_complexity(complexity)
        self.set_max_bandwidth(max_bandwidth)
        self.set_bitrate(bitrate)
        self.set_inband_fec(fec)
        self.set_packet_loss_perc(loss_percent)

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.opus_encoder_destroy(self._state)
            self._state = None

    def _ctl(self, request: int, value: int) -> None:
        # Variadic: every argument needs an explicit C type (a bare int would truncate the pointer).
        _check(self._lib, self._lib.opus_encoder_ctl(ctypes.c_void_p(self._state), ctypes.c_int(request),
                                                     ctypes.c_int(value)))

    def set_bitrate(self, bitrate: int) -> None:
        self._ctl(_SET_BITRATE, bitrate)
        self.bitrate = bitrate

    def set_max_bandwidth(self, bandwidth: str) -> None:
        """Audio bandwidth cap. Below full band the same bitrate leaves room for FEC sooner:
        libopus 1.3 only codes LBRR at 32 kbps with ≤5 % expected loss up to super-wideband."""
        if bandwidth not in BANDWIDTHS:
            raise ValueError(f"bandwidth must be one of {sorted(BANDWIDTHS)}, not {bandwidth!r}")
        self._ctl(_SET_MAX_BANDWIDTH, BANDWIDTHS[bandwidth])
        self.max_bandwidth = bandwidth

    def set_complexity(self, complexity: int) -> None:
        self._ctl(_SET_COMPLEXITY, complexity)
        self.complexity = complexity

    def set_inband_fec(self, enabled: bool) -> None:
        """LBRR: each packet also carries a low-bitrate copy of the previous frame (SILK and
        hybrid modes only), sent once the expected loss is above zero."""
        self._ctl(_SET_INBAND_FEC, int(enabled))
        self.fec = enabled

    def set_packet_loss_perc(self, percent: int) -> None:
        """Expected loss: libopus spends more bits on redundancy as this grows (0 = none)."""
        self.loss_percent = max(0, min(100, int(percent)))
        self._ctl(_SET_PACKET_LOSS_PERC, self.loss_percent)

    def encode(self, pcm: np.ndarray) -> bytes:
        """One packet from 2.5–60 ms of interleaved int16 samples (960 per channel = 20 ms)."""
        samples = pcm if pcm.dtype == np.int16 and pcm.flags.c_contiguous else np.ascontiguousarray(pcm, np.int16)
        size = self._encode(self._state, samples.ctypes.data_as(_Int16Pointer), len(samples) // self._channels,
                            self._buffer, MAX_PACKET)
        if size < 0:
            raise OpusError(self._lib.opus_strerror(size).decode())
        return self._buffer.raw[:size]


def has_inband_fec(payload: bytes) -> bool:
    """Whether an Opus packet carries LBRR (in-band FEC) data for the frame before it.

    Reads the first SILK header bits (RFC 6716 §4.2.3: per-frame VAD flags, then the LBRR flag,
    per channel) with the range decoder of §4.1, so the gateway can count how much of a browser's
    stream is protected — proof that the answer's ``useinbandfec=1`` was honoured. CELT-only
    packets never carry LBRR. ~2 µs; works with any libopus version.
    """
    if len(payload) < 2:
        return False
    toc = payload[0]
    config = toc >> 3
    if config >= 16:
        return False
    offset = _first_frame_offset(payload)
    if offset is None or offset >= len(payload):
        return False
    if config < 12:
        frame_ms = (10, 20, 40, 60)[config & 3]
    else:
        frame_ms = (10, 20)[config & 1]
    silk_frames = max(1, frame_ms // 20)
    decoder = _RangeDecoder(payload, offset)
    for _ in range(2 if toc & 0x4 else 1):
        for _ in range(silk_frames):
            decoder.bit()  # VAD flag
        if decoder.bit():
            return True
    return False


_FRAME_48K = (  # samples per frame at 48 kHz for each TOC configuration (RFC 6716 §3.1)
    (480, 960, 1920, 2880) * 3  # SILK: 10, 20, 40, 60 ms
    + (480, 960) * 2  # hybrid: 10, 20 ms
    + (120, 240, 480, 960) * 4  # CELT: 2.5, 5, 10, 20 ms
)


def packet_samples(payload: bytes) -> int | None:
    """48 kHz samples an Opus packet decodes to, from its TOC byte (RFC 6716 §3.1) — what the
    packet holds, whatever its RTP timestamps claim; None if it is malformed."""
    if not payload:
        return None
    code = payload[0] & 0x3
    if code == 3:
        if len(payload) < 2:
            return None
        frames = payload[1] & 0x3F
    else:
        frames = 1 if code == 0 else 2
    samples = _FRAME_48K[payload[0] >> 3] * frames
    return samples if 0 < samples <= MAX_FRAME_SAMPLES else None


def _first_frame_offset(payload: bytes) -> int | None:
    code = payload[0] & 0x3
    if code < 2:
        return 1
    if code == 2:
        return 2 if payload[1] < 252 else 3
    if len(payload) < 2:
        return None
    count_byte = payload[1]
    offset = 2
    if count_byte & 0x40:  # padding: lengths of 255 continue
        while offset < len(payload):
            byte = payload[offset]
            offset += 1
            if byte != 255:
                break
    if count_byte & 0x80:  # VBR: M-1 frame lengths precede the data
        for _ in range((count_byte & 0x3F) - 1):
            if offset >= len(payload):
                return None
            offset += 1 if payload[offset] < 252 else 2
    return offset


class _RangeDecoder:
    """Just enough of RFC 6716's range decoder (§4.1) to read equiprobable header bits."""

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self._position = offset
        self._rem = self._read()
        self._rng = 128
        self._val = 127 - (self._rem >> 1)
        self._normalize()

    def _read(self) -> int:
        if self._position < len(self._data):
            self._position += 1
            return self._data[self._position - 1]
        return 0

    def _normalize(self) -> None:
        while self._rng <= 1 << 23:
            self._rng <<= 8
            sym = self._rem
            self._rem = self._read()
            sym = ((sym << 8) | self._rem) >> 1
            self._val = ((self._val << 8) + (255 & ~sym)) & 0x7FFFFFFF

    def bit(self) -> bool:
        half = self._rng >> 1
        one = self._val < half
        if one:
            self._rng = half
        else:
            self._val -= half
            self._rng -= half
        self._normalize()
        return one
