#include "ledger/status.hpp"
