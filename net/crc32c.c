/* placeholder */
typedef int dsm__placeholder_crc32c;
