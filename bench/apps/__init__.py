"""Task modules that benchmark workers import (one per system measured)."""
