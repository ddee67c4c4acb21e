// zlib for inflating the deflated explicit VR little endian transfer syntax (PS3.5 §A.5).
#include <zlib.h>
