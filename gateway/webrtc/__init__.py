"""The browser side of a call over WebRTC: peer connection, ICE/TURN, SDP."""
