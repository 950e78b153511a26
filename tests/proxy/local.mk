# tests/proxy: the streaming chat proxy example and its end-to-end test.
