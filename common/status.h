// The Status type is part of the public client API; internal code includes it here.
#pragma once
#include "moepool/status.h"
