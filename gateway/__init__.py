"""WebRTC media gateway for speech-to-speech Realtime APIs."""

__version__ = "0.1.0"
