"""AniPortrait (Zejun-Yang/AniPortrait, audio-driven) run from its official code at a pinned commit."""
