"""The OpenAI Realtime edge: `/v1/realtime`, the GA event set over the cascaded pipeline."""
