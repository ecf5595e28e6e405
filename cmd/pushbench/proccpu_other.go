//go:build !linux

package main

func processCPU(int) (float64, bool) { return 0, false }
