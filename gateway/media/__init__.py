"""Audio in and out: RTP receive, jitter buffer, Opus, resampling, the pacing track."""
