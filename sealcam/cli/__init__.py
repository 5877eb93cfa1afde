"""The owner's command line: `sealcam keys | seal | inspect | verify | decrypt`. Thin over sealcam.format and
sealcam.keys; see docs/ref/cli.md."""
