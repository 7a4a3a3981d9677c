"""The offline local engine: a Realtime-compatible speech-to-speech server (VAD → STT → LLM → TTS)."""
