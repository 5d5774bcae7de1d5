"""What the tests, the benchmarks (scripts/) and the demo share: generated recordings with known
motion (synth, scenes), real-process fakes of the cloud (fake_oss, fake_ice) and of a camera
(rtsp, rtsp_server), and helpers to run the agent and check what it made (agentproc, media)."""
