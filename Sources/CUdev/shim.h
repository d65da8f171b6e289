// libudev, as a SwiftPM system library (apt: libudev-dev).
#include <libudev.h>
