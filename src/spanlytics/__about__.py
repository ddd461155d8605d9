"""The package version, importable without importing the package's public face."""

VERSION = "0.1.0"
